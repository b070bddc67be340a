//! Every rejection, each spanned on the user's token and saying what to do instead, all
//! collected so one compile reports every problem of the item at once.
//!
//! `check` also decides, once, how each parameter reaches the job, and carries that in
//! [`Checked`]: after it succeeds, expansion cannot fail and cannot meet a rejected kind.

use crate::args::{Args, Key};
use crate::errors::Errors;
use crate::signature::{
    arg_attrs, arg_kind, is_local, output, pretty, returns_result, Function, Kind, Local,
};
use proc_macro2::TokenStream;
use syn::visit_mut::{self, VisitMut};
use syn::{FnArg, Lifetime, Meta, Type, TypeFnPtr, TypeReference};

/// Where the function is, for the options that only make sense in some places.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A function on its own (a free function, or a method annotated by itself).
    Alone,
    /// A method of an `#[offload]` impl block of a type.
    InherentImpl,
    /// A method of an `#[offload]` impl block of a trait.
    TraitImpl,
}

/// How one accepted parameter reaches the job.
#[derive(Clone)]
pub enum Pass {
    /// Moved into the job (by-value parameters, `self`, `self: Box<Self>`, ...).
    Moved,
    /// `&T` (and `&self`, with `T = Self`): copied with `ToOwned` at the call, borrowed in the
    /// job. Holds the `T`.
    Copied(Type),
    /// `#[local] pat: &mut T` (`mutable`) or `&T`: the worker's own `T`, not passed by the
    /// caller.
    Local {
        /// The `T`.
        ty: Type,
        /// `&mut T` rather than `&T`.
        mutable: bool,
    },
}

/// A function and its options that passed every check: the input of `expand`.
pub struct Checked {
    /// The options.
    pub args: Args,
    /// The function.
    pub func: Function,
    /// How each parameter of `func.sig.inputs` reaches the job, in order.
    pub params: Vec<Pass>,
}

/// A function that did not pass: what `expand::rejected` emits in its offloaded shape, next
/// to the errors.
pub struct Rejected {
    /// The options that parsed.
    pub args: Args,
    /// The function.
    pub func: Function,
    /// Every problem found.
    pub errors: Errors,
}

/// Checks a function and its options together, adding to the `errors` found so far (those
/// of the options).
pub fn check(
    mut args: Args,
    func: Function,
    place: Place,
    mut errors: Errors,
) -> Result<Checked, Box<Rejected>> {
    check_options(&args, &func, place, &mut errors);
    if place == Place::TraitImpl {
        // Rejected above: the twin would be one more error, "not a member of trait".
        args.sync = None;
    }
    check_signature(&func.sig, &mut errors);
    let params = check_params(&func, &mut errors);
    check_output(func.output(), &mut errors);
    if errors.is_empty() {
        Ok(Checked { args, func, params })
    } else {
        Err(Box::new(Rejected { args, func, errors }))
    }
}

/// Checks the declaration of a method of an `#[offload]` trait, whose return type becomes
/// `Offload<R>`: the same rules as a function's signature, and no `#[local]` parameter,
/// which the trait's callers do not pass.
pub fn check_declaration(sig: &syn::Signature, errors: &mut Errors) {
    check_signature(sig, errors);
    for arg in &sig.inputs {
        match arg_kind(arg) {
            Kind::Moved | Kind::Copied(_) => {}
            Kind::MutRef(and_mut) => errors.spanned(
                and_mut,
                "a method of an #[offload] trait cannot take `&mut`: its body runs later on another thread, on a copy, so the change would be lost; take the value by value and return it, or, for a per-worker resource such as a connection, put a `#[local]` parameter on the method in the impl",
            ),
            Kind::Local(local) => errors.spanned(
                &local.attr,
                "callers of the trait do not pass a `#[local]` resource: leave the parameter out of the trait's method and put `#[local] conn: &mut Conn` on the method in the impl",
            ),
        }
    }
    check_output(output(sig), errors);
}

/// Options that do not fit this function or this place.
fn check_options(args: &Args, func: &Function, place: Place, errors: &mut Errors) {
    if let Some(timeout) = &args.timeout {
        if !returns_result(&func.sig) {
            let returns = match func.output() {
                Some(ty) => format!("`{}`", pretty(ty)),
                None => "`()`".to_owned(),
            };
            // From the block of an impl: the method is named, and the ways out differ.
            let message = if args.inherited.contains(&Key::Timeout) {
                format!(
                    "`timeout` needs methods that return `Result<T, E>`, so that a timeout can be returned as an error; `{}` returns {returns}: change its return type, move `timeout` from the block to the methods that return a `Result`, or mark this one `#[offload(skip)]`",
                    func.sig.ident
                )
            } else {
                format!(
                    "`timeout` needs a function that returns `Result<T, E>`, so that a timeout can be returned as an error; this one returns {returns}: change the return type, or remove `timeout`"
                )
            };
            errors.spanned(&timeout.key, message);
        }
    }
    if args.timeout.is_none() {
        if let Some((_, key)) = args.given.iter().find(|(key, _)| *key == Key::TimeoutError) {
            errors.spanned(
                key,
                "`timeout_error` says how a timeout becomes this function's error, but there is no `timeout`: add one, such as `timeout = \"2s\"`, or remove `timeout_error`",
            );
        }
    }
    for (key, ident) in &args.given {
        match (key, place) {
            (Key::Skip, Place::Alone) => errors.spanned(
                ident,
                "`skip` leaves one method of an #[offload] impl block or trait alone; on a function of its own, remove the #[offload] attribute instead",
            ),
            (Key::Sync, Place::TraitImpl) => errors.spanned(
                ident,
                "`sync` cannot be used in an impl of a trait: the blocking twin would be a method the trait does not declare; use it in an inherent impl block, or call a free function from the method",
            ),
            _ => {}
        }
    }
}

/// The qualifiers a function that returns a future of its body cannot have.
fn check_signature(sig: &syn::Signature, errors: &mut Errors) {
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
    if let syn::Safety::Unsafe(token) = &sig.safety {
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

/// How each parameter reaches the job; `&mut T` and `&mut self` parameters, and `#[local]`
/// parameters that cannot be one, are errors.
fn check_params(func: &Function, errors: &mut Errors) -> Vec<Pass> {
    let mut locals = 0;
    let mut params = Vec::new();
    for arg in &func.sig.inputs {
        match arg_kind(arg) {
            Kind::Moved => params.push(Pass::Moved),
            Kind::Copied(ty) => params.push(Pass::Copied(*ty)),
            Kind::MutRef(and_mut) => {
                let message = match arg {
                    FnArg::Receiver(_) => "`&mut self` cannot be offloaded: the body runs later on another thread, on a copy, so its changes would be lost; take `self` by value and return it (`fn m(self) -> Self`), or, for a per-worker resource such as a connection, use a `#[local]` parameter",
                    FnArg::Typed(_) => "`&mut` parameters cannot be offloaded: the body runs later on another thread, on a copy, so its changes would be lost; take the value by value and return it (`fn f(x: T) -> T`), or, for a per-worker resource such as a connection, use a `#[local]` parameter",
                };
                errors.spanned(and_mut, message);
            }
            Kind::Local(local) => {
                check_local(arg, &local, locals, errors);
                // A misplaced `#[local]` on `self` is its own error, not a first local.
                if let FnArg::Typed(_) = arg {
                    locals += 1;
                }
                if let Some((ty, mutable)) = local.target {
                    params.push(Pass::Local { ty, mutable });
                }
            }
        }
    }
    params
}

/// One `#[local]` parameter; `before` is the number of `#[local]` parameters before it.
fn check_local(arg: &FnArg, local: &Local, before: usize, errors: &mut Errors) {
    let attrs = arg_attrs(arg);
    let ty = match arg {
        FnArg::Receiver(_) => None,
        FnArg::Typed(typed) => Some(&typed.ty),
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
fn check_output(output: Option<&Type>, errors: &mut Errors) {
    let Some(ty) = output else {
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
    fn visit_type_fn_ptr_mut(&mut self, _: &mut TypeFnPtr) {}

    fn visit_parenthesized_generic_arguments_mut(
        &mut self,
        _: &mut syn::ParenthesizedGenericArguments,
    ) {
    }

    fn visit_bound_lifetimes_mut(&mut self, _: &mut syn::BoundLifetimes) {}
}

#[cfg(test)]
mod tests {
    use super::{check, Place};
    use crate::args::Args;
    use crate::errors::Errors;
    use quote::quote;

    fn errors(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        let args = Args::parse(args, &mut errors);
        let func = syn::parse2(item).expect("a function");
        match check(args, func, Place::Alone, errors) {
            Ok(_) => Vec::new(),
            Err(rejected) => rejected
                .errors
                .into_list()
                .iter()
                .map(ToString::to_string)
                .collect(),
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
