//! The rewrite of a checked function. It cannot fail: everything that could go wrong was
//! rejected by `validate`, and what remains (a parameter that is not `Send`, a `Limit` that is
//! not a constant) is left to rustc, with the glue spanned on the user's tokens so rustc's own
//! error points at them.
//!
//! ```text
//! // Input:
//! #[offload(limit = 2)]
//! pub fn get(name: &str, mut n: u32) -> Result<String, E> { body }
//!
//! // Output:
//! #[allow(refining_impl_trait, clippy::double_must_use, clippy::type_complexity)]
//! pub fn get(name: &str, n: u32) -> ::offthread::Offload<Result<String, E>> {
//!     // (the body's inner attributes, `#![..]`, go here)
//!     let __copy0 = <str as ::offthread::__private::ToOwned>::to_owned(name);
//!     let __site: &'static ::offthread::__private::Site = {
//!         static __OFFTHREAD_SITE: ::offthread::__private::Site =
//!             ::offthread::__private::Site::new(::core::concat!(::core::module_path!(), "::", "get"));
//!         &__OFFTHREAD_SITE
//!     };
//!     let __limit: &'static ::offthread::__private::Limit = {
//!         static __OFFTHREAD_LIMIT: ::offthread::__private::Limit =
//!             ::offthread::__private::Limit::new(2);
//!         &__OFFTHREAD_LIMIT
//!     };
//!     ::offthread::__private::with_limit(
//!         ::offthread::__private::with_site(
//!             ::offthread::Pool::spawn(
//!                 ::offthread::default_pool(),
//!                 move || -> Result<String, E> {
//!                     let __run = ::offthread::__private::RunGuard::enter(__site);
//!                     let name: &str = ::offthread::__private::Borrow::borrow(&__copy0);
//!                     let mut n = n;
//!                     body
//!                 },
//!             ),
//!             __site,
//!         ),
//!         __limit,
//!     )
//! }
//! ```
//!
//! With a `#[local] conn: &mut Conn` parameter, the parameter leaves the signature and the job
//! is `Pool::spawn_local::<Conn, _, _>(pool, move |conn: &mut Conn| -> R { .. })`; for `&Conn`, the
//! body starts with `let conn: &Conn = &*conn;`. A `#[cfg(..)]` on that parameter makes two
//! functions, one under the `cfg` with the parameter and one under its negation without.
//!
//! A function that `validate` rejected is emitted by `rejected` in the same shape (the
//! signature above, with a body that never runs), so its callers compile and the only errors
//! are the macro's.
//!
//! The `__site` static holds the function's figures (`offthread::function_metrics`): the
//! call counts itself there, and the guard `__run` times the body.
//!
//! Generated locals (`__copy0`, `__limit`, `__site`, `__run`, `__self`, `__arg0`, `__local`) are resolved at the
//! macro's mixed site, so they can neither clash with nor be seen by the user's names.

use crate::args::Args;
use crate::receiver::{hidden_self, rename_in_tokens, rename_self};
use crate::signature::{plain_ident, remove_local_params, strip_local, Function};
use crate::validate::{Checked, Pass, Rejected};
use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, FnArg, Ident, Lifetime, Pat, PatIdent, ReturnType, Signature, Type};

/// Expands a checked function into the offloaded function (and, with `sync = name`, the
/// original under that name).
pub fn expand(checked: Checked) -> TokenStream {
    match cfg_on_local(&checked) {
        Some((index, predicates)) => {
            let (with, without) = split_cfg_local(checked, index, &predicates);
            let mut out = expand_one(with);
            out.extend(expand_one(without));
            out
        }
        None => expand_one(checked),
    }
}

/// The `#[local]` parameter's index and its `#[cfg(..)]` predicates, if it has any.
fn cfg_on_local(checked: &Checked) -> Option<(usize, Vec<TokenStream>)> {
    let index = checked
        .params
        .iter()
        .position(|pass| matches!(pass, Pass::Local { .. }))?;
    let FnArg::Typed(typed) = &checked.func.sig.inputs[index] else {
        return None;
    };
    let predicates: Vec<TokenStream> = typed
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::List(list) => Some(list.tokens.clone()),
            _ => None,
        })
        .collect();
    (!predicates.is_empty()).then_some((index, predicates))
}

/// A `#[cfg(..)]` on the `#[local]` parameter decides whether the job takes the worker's
/// value at all, so the function is emitted twice: under `#[cfg(all(..))]` with the
/// parameter, and under `#[cfg(not(all(..)))]` without it.
fn split_cfg_local(
    mut checked: Checked,
    index: usize,
    predicates: &[TokenStream],
) -> (Checked, Checked) {
    if let FnArg::Typed(typed) = &mut checked.func.sig.inputs[index] {
        typed.attrs.retain(|attr| !attr.path().is_ident("cfg"));
    }
    let mut without = Checked {
        args: checked.args.clone(),
        func: Function {
            attrs: checked.func.attrs.clone(),
            vis: checked.func.vis.clone(),
            sig: checked.func.sig.clone(),
            body: checked.func.body.clone(),
        },
        params: Vec::new(),
    };
    without.func.sig.inputs = std::mem::take(&mut without.func.sig.inputs)
        .into_iter()
        .enumerate()
        .filter(|(at, _)| *at != index)
        .map(|(_, arg)| arg)
        .collect();
    without.params = checked
        .params
        .iter()
        .enumerate()
        .filter(|(at, _)| *at != index)
        .map(|(_, pass)| pass.clone())
        .collect();
    checked
        .func
        .attrs
        .push(syn::parse_quote!(#[cfg(all(#(#predicates),*))]));
    without
        .func
        .attrs
        .push(syn::parse_quote!(#[cfg(not(all(#(#predicates),*)))]));
    (checked, without)
}

/// Expands a checked function with no `#[cfg]` on its `#[local]` parameter.
fn expand_one(checked: Checked) -> TokenStream {
    let Checked { args, func, params } = checked;
    let krate = krate_path(&args, Span::call_site());
    let krate_at_output = krate_path(&args, output_span_of(&func.sig));
    let sync = args.sync.as_ref().map(|name| {
        let Function {
            attrs,
            vis,
            sig,
            body,
        } = &func;
        let mut sig = sig.clone();
        sig.ident = name.clone();
        // Sync callers pass their own value for a `#[local]` parameter.
        strip_local(&mut sig);
        quote!(#(#attrs)* #vis #sig #body)
    });

    let (inner_attrs, body) = func.split_body();
    let Function {
        attrs,
        vis,
        mut sig,
        ..
    } = func;
    let output = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };

    let mut call_site = Vec::new(); // statements run at call time, before the job exists
    let mut in_job = Vec::new(); // statements run first in the job
    let mut local = None; // the `#[local]` parameter, if any (`validate` allows one)
    for (index, (arg, pass)) in sig.inputs.iter_mut().zip(&params).enumerate() {
        if let Some(found) = bind_param(&args, index, arg, pass, &mut call_site, &mut in_job) {
            local = Some(found);
        }
    }
    // Callers do not pass the `#[local]` parameter: the job gets it from its worker.
    sig.inputs = std::mem::take(&mut sig.inputs)
        .into_iter()
        .zip(&params)
        .filter(|(_, pass)| !matches!(pass, Pass::Local { .. }))
        .map(|(arg, _)| arg)
        .collect();
    let body = if has_receiver(&sig) {
        renamed_body(body)
    } else {
        body
    };

    // The closure's return type is written out so that `?` in the body knows its error type;
    // `impl Trait` cannot be written there, so such return types are left to inference.
    let closure_output = match &output {
        Some(ty) if !contains_impl_trait(ty) => quote!(-> #ty),
        _ => TokenStream::new(),
    };
    let job_output = match &output {
        Some(ty) => ty.to_token_stream(),
        None => quote!(()),
    };
    let output_span = output_span_of(&sig);
    sig.output = syn::parse_quote_spanned!(output_span=> -> #krate_at_output::Offload<#job_output>);

    let pool = match &args.pool {
        Some(expr) => {
            // `&*` turns a static that derefs to a pool into a `&Pool`; a `&..` the user wrote
            // coerces by itself (and `&*&X` would trip `clippy::deref_addrof`).
            match expr {
                syn::Expr::Reference(_) => expr.to_token_stream(),
                _ => quote_spanned!(expr.span()=> &*(#expr)),
            }
        }
        None => quote!(#krate::default_pool()),
    };
    // The job's statements and the body's share one block (a nested block would trip
    // `unused_braces`). The closure runs from the first parameter's first token to the last
    // parameter's last token, so when it is not `Send` or not `'static` because of a
    // parameter, rustc's error underlines the parameters, not the attribute.
    let (first, last) = params_span(&sig).unwrap_or((output_span, output_span));
    // The function's figures (`offthread::function_metrics`): a static per function, a
    // guard that times the body, and the call told where to count itself.
    let site = Ident::new("__site", Span::mixed_site());
    let run_guard = Ident::new("__run", Span::mixed_site());
    let fn_name = sig.ident.to_string();
    let fn_name = fn_name.strip_prefix("r#").unwrap_or(&fn_name);
    let fn_name = match &args.owner {
        Some(owner) => format!("{}::{fn_name}", owner.strip_prefix("r#").unwrap_or(owner)),
        None => fn_name.to_owned(),
    };
    let make_site = quote! {
        let #site: &'static #krate::__private::Site = {
            static __OFFTHREAD_SITE: #krate::__private::Site = #krate::__private::Site::new(
                ::core::concat!(::core::module_path!(), "::", #fn_name),
            );
            &__OFFTHREAD_SITE
        };
    };
    let mut stmts = quote!(let #run_guard = #krate::__private::RunGuard::enter(#site););
    stmts.extend(in_job);
    stmts.extend(body);
    let mut body = Group::new(Delimiter::Brace, stmts);
    body.set_span(last);
    // The call is spanned on the return type, where "`R` cannot be sent" belongs, and names
    // the public `Pool::spawn`, which rustc's notes then name too.
    let (closure, spawn_path) = match &local {
        None => (
            quote_spanned!(first=> move ||),
            quote_spanned!(output_span=> #krate_at_output::Pool::spawn),
        ),
        Some(LocalParam { ty, pat }) => (
            quote_spanned!(first=> move |#pat: &mut #ty|),
            quote_spanned!(output_span=> #krate_at_output::Pool::spawn_local::<#ty, _, _>),
        ),
    };
    let spawn = quote_spanned! {output_span=>
        #krate_at_output::__private::with_site(#spawn_path(#pool, #closure #closure_output #body), #site)
    };
    let (limit, mut job) = wrap(&args, spawn);
    if local.is_some() && args.timeout.is_none() {
        // A failed connect (or a shut-down pool) becomes the function's `Err` when its
        // error type can hold an `offthread::Error`, as with `timeout`; else it panics.
        let private = quote_spanned!(output_span=> #krate_at_output::__private);
        job = quote_spanned! {output_span=>
            #private::with_errors_into(#job, {
                #[allow(unused_imports)]
                use #private::{IntoErr as _, NoErr as _};
                (&#private::ErrorsInto::<#job_output>::NEW).on_error()
            })
        };
    }

    quote! {
        #(#attrs)*
        #[allow(
            refining_impl_trait,
            clippy::double_must_use,
            clippy::type_complexity,
            clippy::redundant_closure_call
        )]
        #vis #sig {
            #inner_attrs
            #(#call_site)*
            #make_site
            #limit
            #job
        }
        #sync
    }
}

/// The body with every `self` that names the receiver renamed. A body that does not parse is
/// renamed token by token, and rustc reports its syntax error where it is.
fn renamed_body(body: TokenStream) -> TokenStream {
    match syn::Block::parse_within.parse2(body.clone()) {
        Ok(stmts) => {
            let mut block = syn::Block {
                brace_token: syn::token::Brace::default(),
                stmts,
            };
            rename_self(&mut block);
            let mut out = TokenStream::new();
            for stmt in &block.stmts {
                stmt.to_tokens(&mut out);
            }
            out
        }
        Err(_) => rename_in_tokens(body),
    }
}

/// A rejected function in the shape it would have had: the signature callers would see (the
/// return type `Offload<R>`, no `#[local]` parameters, none of the qualifiers that were
/// rejected) with a body that never runs (or, when the result holds an `impl Trait`, the
/// user's body, which gives it its type), and the `sync = name` twin, next to the errors. Its
/// callers then compile, and the only errors are the macro's own.
pub fn rejected(rejected: Box<Rejected>) -> TokenStream {
    let Rejected { args, func, errors } = *rejected;
    let krate = krate_path(&args, Span::call_site());
    let (inner_attrs, body) = func.split_body();
    // A body that never runs has no type to give an `impl Trait` in the result: then the
    // user's body, as written, defines it.
    let opaque = func.output().is_some_and(contains_impl_trait);
    let (never, never_sync) = if opaque {
        (quote!(#krate::Offload::ready({ #body })), body)
    } else {
        (
            quote!(::core::unimplemented!()),
            quote!(::core::unimplemented!()),
        )
    };
    let Function {
        attrs, vis, sig, ..
    } = func;
    let mut sig = without_variadic(sig);
    let sync = args.sync.as_ref().map(|name| {
        let mut sig = sig.clone();
        sig.ident = name.clone();
        strip_local(&mut sig);
        quote! {
            #(#attrs)*
            #[allow(unused_variables, unused_mut, clippy::unimplemented)]
            #vis #sig { #inner_attrs #never_sync }
        }
    });
    sig.asyncness = None;
    sig.constness = None;
    sig.abi = None;
    remove_local_params(&mut sig);
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    sig.output = syn::parse_quote!(-> #krate::Offload<#output>);
    let errors = errors.into_compile_errors();
    quote! {
        #(#attrs)*
        #[allow(
            unused_variables,
            unused_mut,
            refining_impl_trait,
            clippy::double_must_use,
            clippy::type_complexity,
            clippy::unimplemented
        )]
        #vis #sig { #inner_attrs #never }
        #sync
        #errors
    }
}

/// A signature without its C variadic `...`, which rustc rejects in a Rust function anyway.
fn without_variadic(mut sig: Signature) -> Signature {
    if sig.variadic.take().is_some() {
        if let Some(arg) = sig.inputs.pop() {
            sig.inputs.push(arg);
        }
    }
    sig
}

/// The path of the facade crate: the user's `crate = path`, or `::offthread` with `span`.
pub fn krate_path(args: &Args, span: Span) -> TokenStream {
    match &args.krate {
        // The user's tokens, moved to `span` (a span of the user's, so the path still
        // resolves where it was written).
        Some(path) => path
            .to_token_stream()
            .into_iter()
            .map(|mut token| {
                token.set_span(span);
                token
            })
            .collect(),
        None => quote_spanned!(span=> ::offthread),
    }
}

/// Where errors about the result go: the return type, or the function's name when there is
/// none.
fn output_span_of(sig: &Signature) -> Span {
    match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    }
}

/// The first token of the first parameter and the last token of the last one.
fn params_span(sig: &Signature) -> Option<(Span, Span)> {
    let first = sig
        .inputs
        .first()?
        .to_token_stream()
        .into_iter()
        .next()?
        .span();
    let last = sig
        .inputs
        .last()?
        .to_token_stream()
        .into_iter()
        .last()?
        .span();
    Some((first, last))
}

/// The `limit` and `timeout` wrappers around the job, in that order: the permit is taken
/// first, so the time spent waiting for it counts against the timeout. Returns the statement
/// that makes the limit (a `static`, shared by every call) and the job expression.
///
/// The job is one nested expression, with no local in between, so that rustc blames a
/// wrapper's unsatisfied bound on the spawn call (spanned on the return type) rather than on
/// a hidden local, which it would report at the whole attribute.
fn wrap(args: &Args, spawn: TokenStream) -> (TokenStream, TokenStream) {
    let mut job = spawn;
    let mut make_limit = TokenStream::new();
    if let Some(limit) = &args.limit {
        let krate = krate_path(args, limit.span());
        let private = quote_spanned!(limit.span()=> #krate::__private);
        let permits = Ident::new("__limit", limit.span().resolved_at(Span::mixed_site()));
        // The static is declared in a block of its own, where no user name can meet it.
        make_limit = quote_spanned! {limit.span()=>
            let #permits: &'static #private::Limit = {
                static __OFFTHREAD_LIMIT: #private::Limit = #private::Limit::new(#limit);
                &__OFFTHREAD_LIMIT
            };
        };
        job = quote_spanned!(limit.span()=> #private::with_limit(#job, #permits));
    }
    if let Some(timeout) = &args.timeout {
        let millis = timeout.millis;
        let krate = krate_path(args, timeout.lit.span());
        let private = quote_spanned!(timeout.lit.span()=> #krate::__private);
        let after = quote_spanned!(timeout.lit.span()=> #private::Duration::from_millis(#millis));
        job = match &args.timeout_error {
            // A closure that captures nothing is a `fn(Error) -> Result<T, E>`; type errors
            // about the conversion land on the user's expression.
            Some(to_error) => {
                let error = Ident::new("__error", Span::mixed_site());
                quote_spanned! {to_error.span()=>
                    #private::with_timeout_as(#job, #after, |#error| #private::Result::Err((#to_error)(#error)))
                }
            }
            None => quote_spanned!(timeout.lit.span()=> #private::with_timeout(#job, #after)),
        };
    }
    (make_limit, job)
}

/// The `#[local]` parameter, as the job's closure takes it: `move |PAT: &mut TY|`.
struct LocalParam {
    /// The `T` of `&mut T` or `&T`, made writable inside the job.
    ty: Type,
    /// The closure's parameter pattern.
    pat: TokenStream,
}

/// How one parameter reaches the job: moved by capture, copied here and borrowed there, or,
/// for `#[local]`, taken by the job's closure from the worker (returned). Rewrites the
/// parameter's pattern in the signature when needed (`mut` is dropped there and kept on the
/// rebinding inside the job, where the mutation happens).
fn bind_param(
    args: &Args,
    index: usize,
    arg: &mut FnArg,
    pass: &Pass,
    call_site: &mut Vec<TokenStream>,
    in_job: &mut Vec<TokenStream>,
) -> Option<LocalParam> {
    let span = arg.span();
    let krate = krate_path(args, span);
    let private = quote_spanned!(span=> #krate::__private);
    match (arg, pass) {
        (FnArg::Typed(typed), Pass::Local { ty, mutable }) => {
            let ty = inferable(ty.clone());
            let pat = &*typed.pat;
            // The closure binds the user's own name, when there is one, rather than one of
            // ours: no name of ours can then meet a user's constant of the same name.
            let pat = match (mutable, pat) {
                (true, _) | (false, Pat::Wild(_)) => pat.to_token_stream(),
                (false, Pat::Ident(binding)) if plain_ident(pat).is_some() => {
                    let (mutability, ident) = (binding.mutability, &binding.ident);
                    in_job.push(quote_spanned!(span=> let #mutability #ident: &#ty = &*#ident;));
                    ident.to_token_stream()
                }
                (false, _) => {
                    let hidden = Ident::new("__local", Span::mixed_site());
                    in_job.push(quote_spanned!(span=> let #pat: &#ty = &*#hidden;));
                    hidden.to_token_stream()
                }
            };
            Some(LocalParam { ty, pat })
        }
        (FnArg::Receiver(receiver), pass) => {
            let cfg = cfg_attrs(&receiver.attrs);
            let self_token = receiver.self_token;
            let hidden = hidden_self(self_token.span);
            if let Pass::Copied(_) = pass {
                let copy = Ident::new("__self_copy", Span::mixed_site());
                call_site.push(quote_spanned! {span=>
                    #(#cfg)* let #copy = <Self as #private::ToOwned>::to_owned(#self_token);
                });
                in_job.push(quote_spanned! {span=>
                    #(#cfg)* let #hidden: &Self = #private::Borrow::borrow(&#copy);
                });
            } else {
                let mutability = receiver.mutability.take();
                in_job.push(quote_spanned! {span=>
                    #(#cfg)* let #mutability #hidden = #self_token;
                });
            }
            None
        }
        (FnArg::Typed(typed), Pass::Copied(elem)) => {
            let cfg = cfg_attrs(&typed.attrs);
            if matches!(*typed.pat, Pat::Wild(_)) {
                return None;
            }
            let copy = format_ident!("__copy{}", index, span = Span::mixed_site());
            let ty = inferable(elem.clone());
            let pat = match plain_ident(&typed.pat) {
                Some(_) => {
                    let Pat::Ident(PatIdent {
                        mutability, ident, ..
                    }) = &mut *typed.pat
                    else {
                        unreachable!("plain_ident matched a Pat::Ident");
                    };
                    let mutability = mutability.take();
                    let ident = ident.clone();
                    call_site.push(quote_spanned! {span=>
                        #(#cfg)* let #copy = <#ty as #private::ToOwned>::to_owned(#ident);
                    });
                    quote!(#mutability #ident)
                }
                None => {
                    let hidden = format_ident!("__arg{}", index, span = Span::mixed_site());
                    let pat = std::mem::replace(&mut *typed.pat, hidden_pat(&hidden));
                    call_site.push(quote_spanned! {span=>
                        #(#cfg)* let #copy = <#ty as #private::ToOwned>::to_owned(#hidden);
                    });
                    pat.into_token_stream()
                }
            };
            in_job.push(quote_spanned! {span=>
                #(#cfg)* let #pat: &#ty = #private::Borrow::borrow(&#copy);
            });
            None
        }
        (FnArg::Typed(typed), Pass::Moved) => {
            let cfg = cfg_attrs(&typed.attrs);
            // Every binding is used whole inside the job, so the closure captures the whole
            // value (not just the fields the body touches) and it is dropped on the worker,
            // as a moved value should be.
            let mut bindings = Bindings::default();
            bindings.visit_pat_mut(&mut typed.pat);
            for (mutability, ident) in bindings.found {
                in_job.push(quote_spanned! {span=>
                    #(#cfg)* let #mutability #ident = #ident;
                });
            }
            None
        }
    }
}

/// `#[cfg]` and `#[cfg_attr]` of a parameter, repeated on the statements made for it.
fn cfg_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr"))
        .collect()
}

/// A pattern that binds a hidden name.
fn hidden_pat(ident: &Ident) -> Pat {
    Pat::Ident(PatIdent {
        attrs: Vec::new(),
        by_ref: None,
        mutability: None,
        ident: ident.clone(),
        subpat: None,
    })
}

/// Whether the function has a receiver.
fn has_receiver(sig: &syn::Signature) -> bool {
    matches!(sig.inputs.first(), Some(FnArg::Receiver(_)))
}

/// The names a by-value pattern binds, with the `mut` taken off the pattern.
#[derive(Default)]
struct Bindings {
    /// `(mut?, name)` for each by-value binding.
    found: Vec<(Option<syn::Token![mut]>, Ident)>,
}

impl VisitMut for Bindings {
    fn visit_pat_ident_mut(&mut self, pat: &mut PatIdent) {
        if pat.by_ref.is_none() {
            self.found.push((pat.mutability.take(), pat.ident.clone()));
        }
        visit_mut::visit_pat_ident_mut(self, pat);
    }
}

/// A parameter's `T` made writable inside the job: lifetimes become `'_` (the job borrows
/// its own copy, not the caller's value) and `impl Trait` becomes `_`.
fn inferable(mut ty: Type) -> Type {
    struct Erase;
    impl VisitMut for Erase {
        fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
            *lifetime = Lifetime::new("'_", lifetime.span());
        }
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(impl_trait) = ty {
                *ty = Type::Infer(syn::TypeInfer {
                    attrs: Vec::new(),
                    underscore_token: syn::Token![_](impl_trait.impl_token.span),
                });
                return;
            }
            visit_mut::visit_type_mut(self, ty);
            // `&(impl A + B)` became `&(_)`: drop the parentheses, which would now trip
            // `unused_parens`.
            if let Type::Paren(paren) = ty {
                if let Type::Infer(_) = *paren.elem {
                    *ty = (*paren.elem).clone();
                }
            }
        }
    }
    Erase.visit_type_mut(&mut ty);
    ty
}

/// Whether a type contains `impl Trait`.
fn contains_impl_trait(ty: &Type) -> bool {
    struct Find(bool);
    impl VisitMut for Find {
        fn visit_type_impl_trait_mut(&mut self, _: &mut syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut find = Find(false);
    find.visit_type_mut(&mut ty.clone());
    find.0
}
