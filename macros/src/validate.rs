//! Every rejection, each spanned on the user's token and saying what to do instead, all
//! collected so one compile reports every problem of the item at once.
//!
//! After `check` succeeds, expansion cannot fail.

use crate::args::Args;
use crate::signature::{is_local, Function, Kind, Local};
use proc_macro2::TokenStream;
use syn::visit_mut::{self, VisitMut};
use syn::{FnArg, Lifetime, Meta, TypeBareFn, TypeReference};

/// Errors collected so far, combined into one `syn::Error` (which renders as one
/// `compile_error!` per problem).
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    /// Records one more problem.
    pub fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    /// Every recorded problem, then `last`: for a problem that stops the checks.
    pub fn ending_with(self, last: syn::Error) -> syn::Error {
        match self.0 {
            Some(mut all) => {
                all.combine(last);
                all
            }
            None => last,
        }
    }

    /// `Err` with every recorded problem, or `Ok(value)` when there were none.
    pub fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(err) => Err(err),
            None => Ok(value),
        }
    }
}

/// A function and its options that passed every check: the input of `expand`.
pub struct Checked {
    /// The options.
    pub args: Args,
    /// The function.
    pub func: Function,
}

/// Parses the options and the item, and checks them together.
pub fn check(args: TokenStream, item: TokenStream) -> syn::Result<Checked> {
    let mut errors = Errors::default();
    let args = Args::parse(args, &mut errors);
    let func = match Function::parse(item) {
        Ok(func) => func,
        Err(err) => return Err(errors.ending_with(err)),
    };
    check_signature(&func, &mut errors);
    check_params(&func, &mut errors);
    check_output(&func, &mut errors);
    if let Some(timeout) = &args.timeout {
        if !func.returns_result() {
            let returns = match func.output() {
                Some(ty) => format!("`{}`", pretty(ty)),
                None => "`()`".to_owned(),
            };
            errors.push(syn::Error::new(
                timeout.key.span(),
                format!(
                    "`timeout` needs a function that returns `Result<T, E>` with `E: From<offthread::Error>`, so that a timeout can be returned as an error; this one returns {returns}: change the return type, or remove `timeout`"
                ),
            ));
        }
    }
    errors.finish(Checked { args, func })
}

/// A type as the user would write it: `Option<String>`, not `Option < String >`.
fn pretty(ty: &syn::Type) -> String {
    let mut text = quote::ToTokens::to_token_stream(ty).to_string();
    for (from, to) in [
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        (" :: ", "::"),
        (":: ", "::"),
        ("& ", "&"),
        (" (", "("),
        ("( ", "("),
        (" )", ")"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// The qualifiers a function that returns a future of its body cannot have.
fn check_signature(func: &Function, errors: &mut Errors) {
    let sig = &func.sig;
    if let Some(token) = &sig.constness {
        errors.push(syn::Error::new_spanned(
            token,
            "a `const fn` cannot be offloaded: a call in a const context cannot start a job on a thread pool; remove `const`, or keep the const fn and call it from an #[offload] function",
        ));
    }
    if let Some(token) = &sig.asyncness {
        errors.push(syn::Error::new_spanned(
            token,
            "#[offload] makes the function awaitable by itself: remove `async` and write the body as the plain blocking code it is (an async body would need an executor on the pool thread)",
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            token,
            "an `unsafe fn` cannot be offloaded: its safety contract is checked at the call, but the body would run later on another thread; make the function safe, or call it from an #[offload] function that upholds the contract",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "a function with an `extern` ABI cannot return a Rust future: remove the ABI, or call the extern function from an #[offload] function",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic.dots,
            "a variadic function cannot be offloaded: C variadic arguments cannot be moved to another thread; take the values as a slice or a `Vec` instead",
        ));
    }
}

/// `&mut T` and `&mut self` parameters, and `#[local]` parameters that cannot be one.
fn check_params(func: &Function, errors: &mut Errors) {
    let mut locals = 0;
    for param in func.params() {
        match &param.kind {
            Kind::MutRef(and_mut) => {
                let message = match param.arg {
                    FnArg::Receiver(_) => "`&mut self` cannot be offloaded: the body runs later on another thread, on a copy, so its changes would be lost; take `self` by value and return it (`fn m(self) -> Self`), or, for a per-worker resource such as a connection, use a `#[local]` parameter",
                    FnArg::Typed(_) => "`&mut` parameters cannot be offloaded: the body runs later on another thread, on a copy, so its changes would be lost; take the value by value and return it (`fn f(x: T) -> T`), or, for a per-worker resource such as a connection, use a `#[local]` parameter",
                };
                errors.push(syn::Error::new_spanned(and_mut, message));
            }
            Kind::Local(local) => {
                check_local(param.arg, local, locals, errors);
                // A misplaced `#[local]` on `self` is its own error, not a first local.
                if let FnArg::Typed(_) = param.arg {
                    locals += 1;
                }
            }
            Kind::Moved | Kind::Copied(_) => {}
        }
    }
}

/// One `#[local]` parameter; `before` is the number of `#[local]` parameters before it.
fn check_local(arg: &FnArg, local: &Local, before: usize, errors: &mut Errors) {
    let (attrs, ty) = match arg {
        FnArg::Receiver(receiver) => (&receiver.attrs, None),
        FnArg::Typed(typed) => (&typed.attrs, Some(&typed.ty)),
    };
    for attr in attrs.iter().filter(|attr| is_local(attr)) {
        if let Meta::List(_) | Meta::NameValue(_) = &attr.meta {
            errors.push(syn::Error::new_spanned(
                &attr.meta,
                "`#[local]` takes no arguments: write `#[local] conn: &mut Conn`; the value is made by the `init` registered with `Builder::worker_local` on the pool",
            ));
        }
    }
    if let Some(repeated) = attrs.iter().filter(|attr| is_local(attr)).nth(1) {
        errors.push(syn::Error::new_spanned(
            repeated,
            "`#[local]` is repeated on this parameter: write it once",
        ));
    }
    let Some(ty) = ty else {
        errors.push(syn::Error::new_spanned(
            &local.attr,
            "`#[local]` cannot go on `self`: it marks a per-worker resource parameter that callers do not pass, such as `#[local] conn: &mut Conn`; take `&self` (or `self`) and add the resource as a parameter of its own",
        ));
        return;
    };
    if before > 0 {
        errors.push(syn::Error::new_spanned(
            &local.attr,
            "at most one `#[local]` parameter per function is supported: put the resources in one struct, register it with `Builder::worker_local`, and take `#[local] res: &mut ThatStruct`",
        ));
    }
    match &local.target {
        None => errors.push(syn::Error::new_spanned(
            ty,
            format!(
                "a `#[local]` parameter borrows the worker's own value for the call: take it by reference, `&mut {ty}` (or `&{ty}`), and register the value with `Builder::worker_local` on the pool",
                ty = pretty(ty),
            ),
        )),
        Some((elem, _)) => {
            let mut finder = ImplTrait::default();
            finder.visit_type_mut(&mut elem.clone());
            if let Some(found) = finder.found {
                errors.push(syn::Error::new_spanned(
                    found,
                    "the type of a `#[local]` parameter picks which `worker_local` value of the pool the body gets, so it must be named: write the concrete type, such as `&mut Conn`, not `impl Trait`",
                ));
            }
        }
    }
}

/// The first `impl Trait` in a type.
#[derive(Default)]
struct ImplTrait {
    /// Its tokens.
    found: Option<TokenStream>,
}

impl VisitMut for ImplTrait {
    fn visit_type_impl_trait_mut(&mut self, ty: &mut syn::TypeImplTrait) {
        self.found
            .get_or_insert_with(|| quote::ToTokens::to_token_stream(ty));
    }
}

/// A return type that borrows (`&T`, `Cow<'a, T>`, `impl Trait + '_`): the future outlives the
/// call, so it cannot borrow from the arguments. `'static` borrows, and lifetimes that belong
/// to a function type inside the return type (`Box<dyn Fn(&str) + Send>`), are fine.
fn check_output(func: &Function, errors: &mut Errors) {
    let Some(ty) = func.output() else {
        return;
    };
    let mut finder = Borrows::default();
    // `syn` is built with `visit-mut` only: visit a copy.
    finder.visit_type_mut(&mut ty.clone());
    for borrow in finder.found {
        errors.push(syn::Error::new_spanned(
            borrow,
            "the result of an #[offload] function is produced on another thread after the call has returned, so it cannot borrow from the arguments: return an owned type (`String` for `&str`, `Vec<T>` for `&[T]`, a clone for `&T`)",
        ));
    }
}

/// Collects the borrows in a return type.
#[derive(Default)]
struct Borrows {
    /// The `&` or lifetime token of each borrow.
    found: Vec<TokenStream>,
}

impl VisitMut for Borrows {
    fn visit_type_reference_mut(&mut self, reference: &mut TypeReference) {
        match &reference.lifetime {
            Some(lifetime) if lifetime.ident == "static" => {}
            Some(lifetime) => {
                let and = reference.and_token;
                self.found.push(quote::quote!(#and #lifetime));
            }
            None => {
                let and = reference.and_token;
                self.found.push(quote::quote!(#and));
            }
        }
        // Only the outermost borrow of a `&&T` is reported.
        if reference
            .lifetime
            .as_ref()
            .is_some_and(|l| l.ident == "static")
        {
            visit_mut::visit_type_reference_mut(self, reference);
        }
    }

    fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
        if lifetime.ident != "static" {
            self.found.push(quote::quote!(#lifetime));
        }
    }

    // Inside `fn(&str) -> usize`, `Fn(&str)` and `for<'a> ...` the lifetimes are the function
    // type's own, not borrows of the arguments.
    fn visit_type_bare_fn_mut(&mut self, _: &mut TypeBareFn) {}

    fn visit_parenthesized_generic_arguments_mut(
        &mut self,
        _: &mut syn::ParenthesizedGenericArguments,
    ) {
    }

    fn visit_bound_lifetimes_mut(&mut self, _: &mut syn::BoundLifetimes) {}
}

#[cfg(test)]
mod tests {
    use super::check;
    use quote::quote;

    fn errors(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> Vec<String> {
        match check(args, item) {
            Ok(_) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn every_problem_of_an_item_is_reported_together() {
        let found = errors(
            quote!(limit = 0, retries = 3, limit = 2),
            quote!(
                async fn f(x: &mut u8) -> &str {
                    ""
                }
            ),
        );
        assert_eq!(found.len(), 6, "{found:#?}");
    }

    #[test]
    fn accepts_every_option_once() {
        let found = errors(
            quote!(
                pool = DB,
                limit = 2,
                timeout = "1s",
                sync = f_blocking,
                crate = ::x,
            ),
            quote!(
                pub fn f(a: &str, b: u8) -> Result<u8, E> {
                    Ok(b)
                }
            ),
        );
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn local_accepts_mut_and_shared_references_with_every_option() {
        let found = errors(
            quote!(pool = DB, limit = 1, timeout = "1s", sync = f_blocking),
            quote!(
                fn f(&self, a: &str, #[local] mut conn: &'a mut Conn<u8>) -> Result<u8, E> {
                    Ok(0)
                }
            ),
        );
        assert!(found.is_empty(), "{found:#?}");
        let found = errors(
            quote!(),
            quote!(
                fn f(#[local] _: &Conn) {}
            ),
        );
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn every_misuse_of_local_is_reported_together() {
        let found = errors(
            quote!(),
            quote!(
                fn f(
                    #[local] &mut self,
                    #[local(x)] a: &mut A,
                    #[local]
                    #[local]
                    b: &B,
                    #[local] c: C,
                    #[local] d: &mut impl Conn,
                ) {
                }
            ),
        );
        let expected = [
            "cannot go on `self`",
            "takes no arguments",
            "repeated on this parameter",
            "at most one `#[local]` parameter",
            "take it by reference, `&mut C` (or `&C`)",
            "must be named",
        ];
        for needle in expected {
            assert!(
                found.iter().any(|message| message.contains(needle)),
                "no error containing {needle:?} in {found:#?}"
            );
        }
        // `&mut self` is reported once, as a misplaced `#[local]`, not also as `&mut self`.
        assert!(
            !found.iter().any(|m| m.starts_with("`&mut self`")),
            "{found:#?}"
        );
    }

    #[test]
    fn static_and_function_type_lifetimes_are_not_borrows() {
        let found = errors(
            quote!(),
            quote!(
                fn f(a: &str) -> (&'static str, Box<dyn Fn(&str) -> usize + Send>) {
                    todo!()
                }
            ),
        );
        assert!(found.is_empty(), "{found:#?}");
    }
}
