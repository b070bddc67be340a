//! What the annotated function is, as written: its outer attributes, visibility, signature
//! and body, with the body kept as the user's raw tokens (inner attributes included), and
//! how each parameter, as written, would reach the job.
//!
//! The body is not parsed here, as tracing's `#[instrument]` does: a syntax error inside it
//! is then reported by rustc at its real place, not as "this is not a function".
//!
//! Nothing here rejects a function that parsed; `validate` does that, so all problems are
//! reported together.

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{
    Attribute, FnArg, Ident, Pat, PatType, Receiver, ReceiverKind, ReturnType, Signature, Type,
    TypeReference, Visibility,
};

/// A function with a body, as written.
pub struct Function {
    /// Outer attributes (docs, `#[must_use]`, `#[cfg]`, ...), kept on the output.
    pub attrs: Vec<Attribute>,
    /// Visibility, kept.
    pub vis: Visibility,
    /// The signature as written.
    pub sig: Signature,
    /// The body as written: a `{ .. }` group, inner attributes included.
    pub body: Group,
}

impl Parse for Function {
    fn parse(input: ParseStream) -> syn::Result<Function> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let body = match input.parse::<TokenTree>()? {
            TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => group,
            other => return Err(syn::Error::new(other.span(), "expected a function body")),
        };
        Ok(Function {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

impl Function {
    /// The return type, `None` for `()` written as nothing.
    pub fn output(&self) -> Option<&Type> {
        output(&self.sig)
    }

    /// The body's leading inner attributes (`#![allow(..)]`) and the rest of its tokens.
    pub fn split_body(&self) -> (TokenStream, TokenStream) {
        let mut tokens: Vec<TokenTree> = self.body.stream().into_iter().collect();
        let mut at = 0;
        while let [TokenTree::Punct(hash), TokenTree::Punct(bang), TokenTree::Group(group), ..] =
            &tokens[at..]
        {
            if hash.as_char() != '#'
                || bang.as_char() != '!'
                || group.delimiter() != Delimiter::Bracket
            {
                break;
            }
            at += 3;
        }
        let rest = tokens.split_off(at);
        (tokens.into_iter().collect(), rest.into_iter().collect())
    }
}

/// The return type of a signature, `None` for `()` written as nothing.
pub fn output(sig: &Signature) -> Option<&Type> {
    match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(ty),
    }
}

/// `true` when the return type is spelled `Result<..>` or an alias whose name ends in
/// `Result` (`Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`, `QueryResult<T>`): the
/// only shape `timeout` can put its error into.
pub fn returns_result(sig: &Signature) -> bool {
    let Some(Type::Path(path)) = output(sig).map(strip_parens) else {
        return false;
    };
    path.qself.is_none()
        && path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident.to_string().ends_with("Result"))
}

/// How one parameter (the receiver included), as written, would reach the job.
pub enum Kind {
    /// By value (`x: T`, `self`, `mut self`, `self: Arc<Self>`, `self: Box<Self>`): moved in.
    Moved,
    /// `&T` (and `&self`): copied with `ToOwned` at call time; the body borrows the copy.
    /// Holds the `T`.
    Copied(Box<Type>),
    /// `&mut T` (and `&mut self`): rejected by `validate`. Holds the `&mut` tokens.
    MutRef(TokenStream),
    /// `#[local] conn: &mut T` (or `&T`): not passed by the caller; the body gets the worker's
    /// own `T`. Also on anything else marked `#[local]`, for `validate` to reject.
    Local(Box<Local>),
}

/// A parameter marked `#[local]`.
pub struct Local {
    /// The `#[local]` attribute (the first one, if repeated), where errors about it point.
    pub attr: Attribute,
    /// `Some((T, mutable))` for `&mut T` and `&T`, `None` for anything else (rejected).
    pub target: Option<(Type, bool)>,
}

/// The kind of any parameter, the receiver included.
pub fn arg_kind(arg: &FnArg) -> Kind {
    match arg {
        FnArg::Receiver(receiver) => match local_attr(&receiver.attrs) {
            Some(attr) => Kind::Local(Box::new(Local {
                attr: attr.clone(),
                target: None,
            })),
            None => receiver_kind(receiver),
        },
        FnArg::Typed(PatType { attrs, ty, .. }) => match local_attr(attrs) {
            Some(attr) => Kind::Local(Box::new(Local {
                attr: attr.clone(),
                target: match strip_parens(ty) {
                    Type::Reference(TypeReference {
                        mutability, elem, ..
                    }) => Some(((**elem).clone(), mutability.is_some())),
                    _ => None,
                },
            })),
            None => type_kind(ty),
        },
    }
}

/// Whether an attribute is `#[local]` (with or without arguments, which `validate` rejects).
pub fn is_local(attr: &Attribute) -> bool {
    attr.path().is_ident("local")
}

/// The first `#[local]` among a parameter's attributes.
pub fn local_attr(attrs: &[Attribute]) -> Option<&Attribute> {
    attrs.iter().find(|attr| is_local(attr))
}

/// The attributes of a parameter.
pub fn arg_attrs(arg: &FnArg) -> &[Attribute] {
    match arg {
        FnArg::Receiver(receiver) => &receiver.attrs,
        FnArg::Typed(typed) => &typed.attrs,
    }
}

/// Takes every `#[local]` off the parameters of a signature: it is not a real attribute, and
/// rustc would reject it on the items we emit.
pub fn strip_local(sig: &mut Signature) {
    for arg in &mut sig.inputs {
        let attrs = match arg {
            FnArg::Receiver(receiver) => &mut receiver.attrs,
            FnArg::Typed(typed) => &mut typed.attrs,
        };
        attrs.retain(|attr| !is_local(attr));
    }
}

/// Removes the `#[local]` parameters from a signature, as callers see it (a `#[local]` on
/// `self`, an error, only loses its attribute).
pub fn remove_local_params(sig: &mut Signature) {
    sig.inputs = std::mem::take(&mut sig.inputs)
        .into_iter()
        .filter(|arg| !matches!(arg, FnArg::Typed(typed) if local_attr(&typed.attrs).is_some()))
        .collect();
    strip_local(sig);
}

/// The kind of a receiver: `self`, `mut self`, `&self`, `&mut self`, `self: TYPE`.
fn receiver_kind(receiver: &Receiver) -> Kind {
    match &receiver.kind {
        ReceiverKind::Reference(and, _, Some(mutability)) => {
            Kind::MutRef(quote::quote!(#and #mutability))
        }
        ReceiverKind::Reference(..) => Kind::Copied(Box::new(syn::parse_quote!(Self))),
        ReceiverKind::Typed(_, ty) => type_kind(ty),
        // `self`, `mut self`; and receivers newer than this macro, which rustc then checks
        // as moved values.
        _ => Kind::Moved,
    }
}

/// The kind of a typed parameter: `&mut T`, `&T`, or anything else (by value).
fn type_kind(ty: &Type) -> Kind {
    match strip_parens(ty) {
        Type::Reference(TypeReference {
            and_token,
            mutability: Some(mutability),
            ..
        }) => Kind::MutRef(quote::quote!(#and_token #mutability)),
        Type::Reference(TypeReference { elem, .. }) => Kind::Copied(elem.clone()),
        _ => Kind::Moved,
    }
}

/// `(T)` and invisible groups (from `macro_rules!` metavariables) -> `T`.
pub fn strip_parens(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Paren(inner) => ty = &inner.elem,
            Type::Group(inner) => ty = &inner.elem,
            _ => return ty,
        }
    }
}

/// The identifier a parameter binds when its pattern is a plain name (`x`, `mut x`).
pub fn plain_ident(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => Some(&ident.ident),
        _ => None,
    }
}

/// A type as the user would write it: `Option<String>`, not `Option < String >`.
pub fn pretty(ty: &impl ToTokens) -> String {
    let mut text = ty.to_token_stream().to_string();
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

impl ToTokens for Function {
    /// The function as written (a method left alone by `#[offload(skip)]`).
    fn to_tokens(&self, tokens: &mut TokenStream) {
        for attr in &self.attrs {
            attr.to_tokens(tokens);
        }
        self.vis.to_tokens(tokens);
        self.sig.to_tokens(tokens);
        self.body.to_tokens(tokens);
    }
}
