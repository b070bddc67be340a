//! `#[offload]` on an impl block or a trait definition.
//!
//! ```text
//! // Input:                                  // Output:
//! #[offload]                                 trait Repo: Send + Sync {
//! trait Repo: Send + Sync {                      fn find(&self, id: u32)
//!     fn find(&self, id: u32) -> Option<User>;       -> ::offthread::Offload<Option<User>>;
//! }                                          }
//!
//! #[offload(pool = DB)]                      impl Repo for Db {
//! impl Repo for Db {                             // each method with a body, offloaded as by
//!     fn find(&self, id: u32) -> .. { .. }       // #[offload(pool = DB)] on the method
//! }                                          }
//! ```
//!
//! In an impl block, a method's own `#[offload(..)]` adds to and overrides the block's
//! options, `#[offload(skip)]` leaves it alone, and items other than methods pass through.
//! In a trait, every method is declared to return `Offload<R>`: the trait stays
//! dyn-compatible with no boxing. A default body is rejected (the trait cannot know that
//! `Self` can be copied to a worker), unless the method is `#[offload(skip)]`, which keeps it
//! a plain method.
//!
//! Each method's problems are reported with the others; a rejected method is emitted in its
//! offloaded shape, like a rejected function.

use crate::args::{Args, Key};
use crate::errors::Errors;
use crate::expand;
use crate::item::function;
use crate::signature::{remove_local_params, Function};
use crate::validate::{self, Place};
use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, ImplItem, ItemImpl, ItemTrait, TraitItem};

/// The item split into its header (everything before the last `{ .. }`) and the braces.
fn split_braces(item: &TokenStream) -> Option<(TokenStream, Group)> {
    let mut tokens: Vec<TokenTree> = item.clone().into_iter().collect();
    match tokens.pop()? {
        TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => {
            Some((tokens.into_iter().collect(), group))
        }
        _ => None,
    }
}

/// One item inside the braces: a function with a body (kept as tokens), or anything else.
enum Inner<T> {
    Function(Box<Function>),
    Other(T),
}

/// Parses the inner attributes and the items inside an impl block's or a trait's braces.
fn parse_items<T: syn::parse::Parse>(body: &Group) -> syn::Result<(Vec<Attribute>, Vec<Inner<T>>)> {
    let parser = |input: ParseStream| {
        let attrs = input.call(Attribute::parse_inner)?;
        let mut items = Vec::new();
        while !input.is_empty() {
            let fork = input.fork();
            if let Ok(func) = fork.parse::<Function>() {
                syn::parse::discouraged::Speculative::advance_to(input, &fork);
                items.push(Inner::Function(Box::new(func)));
            } else {
                items.push(Inner::Other(input.parse()?));
            }
        }
        Ok((attrs, items))
    };
    parser.parse2(body.stream())
}

/// Takes the `#[offload(..)]` attributes off a method and parses their options. More than
/// one is an error on the second.
fn method_args(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Args {
    let mut found: Vec<Attribute> = Vec::new();
    attrs.retain(|attr| {
        let ours = attr
            .path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "offload");
        if ours {
            found.push(attr.clone());
        }
        !ours
    });
    if let Some(repeated) = found.get(1) {
        errors.spanned(
            repeated,
            "#[offload] is repeated on this method: give all its options in one attribute",
        );
    }
    match found.first().map(|attr| &attr.meta) {
        Some(syn::Meta::List(list)) => Args::parse(list.tokens.clone(), errors),
        Some(syn::Meta::Path(_)) | None => Args::default(),
        Some(syn::Meta::NameValue(meta)) => {
            errors.spanned(
                meta,
                "write the options in parentheses: `#[offload(limit = 4)]`",
            );
            Args::default()
        }
    }
}

/// `skip` and `sync` on the block itself are errors: they go on a method.
fn check_block_args(args: &Args, errors: &mut Errors) {
    if let Some(sync) = &args.sync {
        errors.spanned(
            sync,
            "`sync` names one function, so it goes on a method of the block, not on the block: `#[offload(sync = find_blocking)] fn find(..)`",
        );
    }
    if let Some(skip) = &args.skip {
        errors.spanned(
            skip,
            "`skip` goes on a method of the block, to leave that one alone: `#[offload(skip)] fn new() -> Self`; to offload nothing, remove the #[offload] from the block",
        );
    }
}

/// `#[offload(args)]` on an impl block. Problems with the block go to `errors`; each
/// method's go next to that method.
pub fn impl_block(args: &Args, errors: &mut Errors, item: TokenStream) -> syn::Result<TokenStream> {
    let Some((header, body)) = split_braces(&item) else {
        return Err(syn::Error::new_spanned(item, "expected an impl block"));
    };
    let mut block: ItemImpl = syn::parse2(quote!(#header {}))?;
    let (inner_attrs, items) = parse_items::<ImplItem>(&body)?;
    check_block_args(args, errors);
    let place = if block.trait_.is_some() {
        Place::TraitImpl
    } else {
        Place::InherentImpl
    };
    // The methods' figures are named `module::Type::method`.
    let mut args = args.clone();
    if let syn::Type::Path(ty) = &*block.self_ty {
        args.owner = ty.path.segments.last().map(|s| s.ident.to_string());
    }
    let args = &args;
    block.attrs.extend(inner_attrs);
    for inner in items {
        let tokens = match inner {
            Inner::Function(mut func) => {
                let mut method_errors = Errors::default();
                let own = method_args(&mut func.attrs, &mut method_errors);
                if own.skip.is_some() {
                    method_errors
                        .into_compile_errors()
                        .into_iter()
                        .chain(func.to_token_stream())
                        .collect()
                } else {
                    function(own.or(args), *func, place, method_errors)
                }
            }
            Inner::Other(other) => other.into_token_stream(),
        };
        block.items.push(ImplItem::Verbatim(tokens));
    }
    Ok(block.into_token_stream())
}

/// `#[offload(args)]` on a trait definition.
pub fn trait_block(
    args: &Args,
    errors: &mut Errors,
    item: TokenStream,
) -> syn::Result<TokenStream> {
    let Some((header, body)) = split_braces(&item) else {
        return Err(syn::Error::new_spanned(item, "expected a trait"));
    };
    let mut block: ItemTrait = syn::parse2(quote!(#header {}))?;
    let (inner_attrs, items) = parse_items::<TraitItem>(&body)?;
    check_block_args(args, errors);
    check_trait_args(args, errors);
    let krate = expand::krate_path(args, proc_macro2::Span::call_site());
    block.attrs.extend(inner_attrs);
    for inner in items {
        let tokens = match inner {
            // A default body.
            Inner::Function(mut func) => {
                let own = method_args(&mut func.attrs, errors);
                check_trait_args(&own, errors);
                if own.skip.is_some() {
                    func.to_token_stream()
                } else {
                    errors.push(syn::Error::new(
                        func.body.span_open(),
                        "a method of an #[offload] trait cannot have a default body: the trait cannot know that `Self` can be copied to a worker thread; write the body in each impl (an #[offload] impl block offloads it), or mark the method `#[offload(skip)]` to keep it a plain method that is not offloaded",
                    ));
                    declaration(&krate, func.attrs, func.sig, errors)
                }
            }
            Inner::Other(TraitItem::Fn(mut method)) => {
                let own = method_args(&mut method.attrs, errors);
                check_trait_args(&own, errors);
                if own.skip.is_some() {
                    method.into_token_stream()
                } else {
                    declaration(&krate, method.attrs, method.sig, errors)
                }
            }
            Inner::Other(other) => other.into_token_stream(),
        };
        block.items.push(TraitItem::Verbatim(tokens));
    }
    Ok(block.into_token_stream())
}

/// In a trait, only `crate` (and `skip` on a method) mean something: the other options
/// belong to the implementations.
fn check_trait_args(args: &Args, errors: &mut Errors) {
    for (key, ident) in &args.given {
        if !matches!(key, Key::Crate | Key::Skip) {
            errors.spanned(
                ident,
                format!(
                    "`{}` says how an implementation runs, so it goes on the impl block or its methods, not on the trait: `#[offload({} = ..)] impl Trait for Type {{ .. }}`",
                    key.name(),
                    key.name()
                ),
            );
        }
    }
}

/// A trait method declared to return `Offload<R>`.
fn declaration(
    krate: &TokenStream,
    attrs: Vec<Attribute>,
    mut sig: syn::Signature,
    errors: &mut Errors,
) -> TokenStream {
    validate::check_declaration(&sig, errors);
    sig.asyncness = None;
    sig.constness = None;
    sig.abi = None;
    remove_local_params(&mut sig);
    let output = match &sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    sig.output = syn::parse_quote!(-> #krate::Offload<#output>);
    quote!(#(#attrs)* #sig;)
}
