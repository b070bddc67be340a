//! What `#[offload]` is on: a function with a body, an impl block or a trait (`blocks.rs`),
//! or anything else (rejected, with the places `#[offload]` goes instead).

use crate::args::Args;
use crate::blocks;
use crate::errors::Errors;
use crate::expand;
use crate::signature::{strip_local, Function};
use crate::validate::{self, Place};
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;

/// Expands `#[offload(args)]` on `item`.
pub fn offload(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = Args::parse(args, &mut errors);
    let (keyword, _) = first_keyword(item.clone());
    let block = match keyword.as_str() {
        "impl" => blocks::impl_block(&args, &mut errors, item.clone()),
        "trait" => blocks::trait_block(&args, &mut errors, item.clone()),
        _ => return single(args, errors, item),
    };
    // A block that does not parse is emitted as written, next to the parser's error.
    let mut out = block.unwrap_or_else(|err| {
        errors.push(err);
        not_a_function_fallback(item)
    });
    out.extend(errors.into_compile_errors());
    out
}

/// `#[offload(args)]` on a single function, or on an item it does not apply to.
fn single(args: Args, mut errors: Errors, item: TokenStream) -> TokenStream {
    match syn::parse2::<Function>(item.clone()) {
        Ok(func) => function(args, func, Place::Alone, errors),
        Err(err) => {
            let mut out = not_a_function_fallback(item.clone());
            errors.push(not_a_function(item, err));
            out.extend(errors.into_compile_errors());
            out
        }
    }
}

/// One function: checked, then expanded, or emitted in its offloaded shape next to its errors.
pub fn function(args: Args, func: Function, place: Place, errors: Errors) -> TokenStream {
    match validate::check(args, func, place, errors) {
        Ok(checked) => expand::expand(checked),
        Err(rejected) => expand::rejected(rejected),
    }
}

/// The item to emit next to the error for something that is not a function: the item as
/// written, without the `#[local]`s on its methods' parameters, which would only add
/// "cannot find attribute `local`" to our error.
fn not_a_function_fallback(item: TokenStream) -> TokenStream {
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Impl(mut block)) => {
            for item in &mut block.items {
                if let syn::ImplItem::Fn(method) = item {
                    strip_local(&mut method.sig);
                }
            }
            block.into_token_stream()
        }
        Ok(syn::Item::Trait(mut block)) => {
            for item in &mut block.items {
                if let syn::TraitItem::Fn(method) = item {
                    strip_local(&mut method.sig);
                }
            }
            block.into_token_stream()
        }
        _ => item,
    }
}

/// The error for an item that is not a function with a body, on the item's first token after
/// its attributes and visibility; for a function whose signature does not parse, the
/// parser's own error.
fn not_a_function(item: TokenStream, parse_error: syn::Error) -> syn::Error {
    let ends_in_semicolon =
        matches!(item.clone().into_iter().last(), Some(TokenTree::Punct(p)) if p.as_char() == ';');
    let (keyword, span) = first_keyword(item);
    let message = match keyword.as_str() {
        "fn" | "async" | "const" | "unsafe" | "extern" if !ends_in_semicolon => return parse_error,
        "fn" | "async" | "const" | "unsafe" | "extern" => "#[offload] needs a function with a body: for a method of a trait, put #[offload] on the trait itself, which declares every method to return `offthread::Offload<R>`, and on the impl blocks",
        _ => "#[offload] can only be used on a function, an impl block or a trait",
    };
    syn::Error::new(span, message)
}

/// The first keyword of an item after its attributes and visibility, and its span.
fn first_keyword(item: TokenStream) -> (String, Span) {
    let mut tokens = item.into_iter().peekable();
    let mut last_span = Span::call_site();
    while let Some(token) = tokens.next() {
        last_span = token.span();
        match &token {
            // `#[attr]` and `#![attr]`.
            TokenTree::Punct(p) if p.as_char() == '#' || p.as_char() == '!' => {}
            TokenTree::Group(_) => {}
            TokenTree::Ident(ident) if ident == "pub" => {
                // `pub(crate)`, `pub(in path)`.
                if matches!(tokens.peek(), Some(TokenTree::Group(g)) if g.delimiter() == proc_macro2::Delimiter::Parenthesis)
                {
                    tokens.next();
                }
            }
            // `unsafe impl`, `unsafe trait`, `auto trait`: the item's keyword comes next.
            TokenTree::Ident(ident)
                if (ident == "unsafe" || ident == "auto")
                    && matches!(tokens.peek(), Some(TokenTree::Ident(next)) if next == "impl" || next == "trait") =>
                {}
            TokenTree::Ident(ident) => return (ident.to_string(), ident.span()),
            _ => return (String::new(), token.span()),
        }
    }
    (String::new(), last_span)
}
