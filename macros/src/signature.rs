//! What the annotated item is: a function with a body, each parameter classified by how it
//! reaches the job (moved, copied from a `&T`, or the worker's own value for `#[local]`), and
//! its return type.
//!
//! Nothing here rejects a function that parsed; `validate` does that, so all problems are
//! reported together. The only error here is "this is not a function with a body".

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{
    Attribute, Block, FnArg, Ident, ItemFn, Pat, PatType, Receiver, ReturnType, Signature, Type,
    TypeReference, Visibility,
};

/// The annotated function, as written.
pub struct Function {
    /// Attributes on the function (docs, `#[must_use]`, `#[cfg]`, ...), kept on the output.
    pub attrs: Vec<Attribute>,
    /// Visibility, kept.
    pub vis: Visibility,
    /// The signature as written.
    pub sig: Signature,
    /// The body as written.
    pub block: Box<Block>,
}

/// How one parameter (the receiver included) reaches the job.
pub enum Kind {
    /// By value (`x: T`, `self`, `mut self`, `self: Arc<Self>`, `self: Box<Self>`): moved in.
    Moved,
    /// `&T` (and `&self`): copied with `ToOwned` at call time; the body borrows the copy.
    /// Holds the `T`.
    Copied(Type),
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

/// One parameter of the signature.
pub struct Param<'a> {
    /// The parameter as written.
    pub arg: &'a FnArg,
    /// How it reaches the job.
    pub kind: Kind,
}

impl Function {
    /// Parses the item under the attribute. Anything but a function with a body is an error
    /// on the item's first token, saying where `#[offload]` goes instead.
    pub fn parse(item: TokenStream) -> syn::Result<Function> {
        match syn::parse2::<ItemFn>(item.clone()) {
            Ok(func) => Ok(Function {
                attrs: func.attrs,
                vis: func.vis,
                sig: func.sig,
                block: func.block,
            }),
            Err(_) => Err(not_a_function(item)),
        }
    }

    /// Every parameter with its kind, the receiver first if there is one.
    pub fn params(&self) -> Vec<Param<'_>> {
        self.sig
            .inputs
            .iter()
            .map(|arg| Param {
                arg,
                kind: arg_kind(arg),
            })
            .collect()
    }

    /// The return type, `None` for `()` written as nothing.
    pub fn output(&self) -> Option<&Type> {
        match &self.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(ty),
        }
    }

    /// `true` when the return type is spelled `Result<..>` (`Result<T, E>`, `io::Result<T>`,
    /// `anyhow::Result<T>`): the only shape `timeout` can put its error into.
    pub fn returns_result(&self) -> bool {
        let Some(Type::Path(path)) = self.output().map(strip_parens) else {
            return false;
        };
        path.qself.is_none()
            && path
                .path
                .segments
                .last()
                .is_some_and(|segment| segment.ident == "Result")
    }
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

/// The kind of a receiver: `self`, `mut self`, `&self`, `&mut self`, `self: TYPE`.
pub fn receiver_kind(receiver: &Receiver) -> Kind {
    match &receiver.reference {
        Some((and, _)) => match &receiver.mutability {
            Some(mutability) => Kind::MutRef(quote::quote!(#and #mutability)),
            None => Kind::Copied(syn::parse_quote!(Self)),
        },
        // `self`, `mut self`, or `self: TYPE` (`colon_token` set; `ty` is the written type).
        None if receiver.colon_token.is_some() => type_kind(&receiver.ty),
        None => Kind::Moved,
    }
}

/// The kind of a typed parameter: `&mut T`, `&T`, or anything else (by value).
pub fn type_kind(ty: &Type) -> Kind {
    match strip_parens(ty) {
        Type::Reference(TypeReference {
            and_token,
            mutability: Some(mutability),
            ..
        }) => Kind::MutRef(quote::quote!(#and_token #mutability)),
        Type::Reference(TypeReference { elem, .. }) => Kind::Copied((**elem).clone()),
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

/// The item to emit next to our errors: the item as written, so that its callers see no
/// follow-on errors. A variadic is taken off first, since rustc rejects it in a Rust function
/// anyway and would only repeat our error, and so is every `#[local]` on a parameter, which
/// rustc does not know as an attribute.
pub fn fallback(item: TokenStream) -> TokenStream {
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(mut func)) => {
            if func.sig.variadic.is_some() {
                func.sig.variadic = None;
                if let Some(pair) = func.sig.inputs.pop() {
                    func.sig.inputs.push(pair.into_value());
                }
            }
            strip_local(&mut func.sig);
            func.into_token_stream()
        }
        // `#[offload]` on an impl block or a trait: the `#[local]`s its methods carry would
        // only add "cannot find attribute `local`" to our error.
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
/// its attributes and visibility.
fn not_a_function(item: TokenStream) -> syn::Error {
    let (keyword, span) = first_keyword(item);
    let message = match keyword.as_str() {
        "impl" => "#[offload] goes on each method of an impl block, not on the block: write it above the `fn`s to offload",
        "trait" => "#[offload] goes on the methods of an impl, not on a trait: declare the trait method as `fn m(&self) -> impl Future<Output = R> + Send;` and put #[offload] on the method in each impl",
        "fn" | "async" | "const" | "unsafe" | "extern" => "#[offload] needs a function with a body: on a trait method without one, declare it as `fn m(&self) -> impl Future<Output = R> + Send;` and put #[offload] on the method in each impl",
        _ => "#[offload] can only be used on a function (a free function, an inherent method, or a method of a trait impl)",
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
            TokenTree::Ident(ident) => return (ident.to_string(), ident.span()),
            _ => return (String::new(), token.span()),
        }
    }
    (String::new(), last_span)
}
