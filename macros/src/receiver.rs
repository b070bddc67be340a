//! Renames `self` in a method body, so the body can run inside a closure that owns (or
//! borrows a copy of) the receiver.
//!
//! A closure cannot bind a new `self`, so the expansion binds the receiver to a hidden local
//! and every `self` of the body that refers to the receiver is renamed to it:
//!
//! ```text
//! // Input:                         // Output:
//! fn len(&self) -> usize {          let __self: &Self = Borrow::borrow(&copy);
//!     self.items.len()              __self.items.len()
//! }
//! ```
//!
//! The new name has the span of the `self` it replaces, resolved at the macro's mixed site:
//! errors still point at the user's `self`, and no name of the user's can clash with it.
//! `self` inside a nested item (a `fn` or `impl` declared in the body) belongs to that item
//! and is left alone; `self::path` is a module path and is left alone. Macro invocations are
//! opaque to `syn`, so their tokens are rewritten by the same two rules.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use syn::visit_mut::{self, VisitMut};
use syn::{Block, ExprPath, Item, Macro};

/// The hidden name of the receiver inside the job, spanned like the `self` it replaces.
pub fn hidden_self(span: Span) -> Ident {
    Ident::new("__self", span.resolved_at(Span::mixed_site()))
}

/// Renames every `self` of `block` that refers to the receiver.
pub fn rename_self(block: &mut Block) {
    RenameSelf.visit_block_mut(block);
}

/// The visitor behind `rename_self`.
struct RenameSelf;

impl VisitMut for RenameSelf {
    fn visit_expr_path_mut(&mut self, expr: &mut ExprPath) {
        if expr.qself.is_none()
            && expr.path.leading_colon.is_none()
            && expr.path.segments.len() == 1
        {
            let segment = &mut expr.path.segments[0];
            if segment.ident == "self" && segment.arguments.is_none() {
                segment.ident = hidden_self(segment.ident.span());
                return;
            }
        }
        visit_mut::visit_expr_path_mut(self, expr);
    }

    fn visit_item_mut(&mut self, _: &mut Item) {
        // A nested item has its own `self`, or none.
    }

    fn visit_macro_mut(&mut self, mac: &mut Macro) {
        mac.tokens = rename_in_tokens(std::mem::take(&mut mac.tokens));
    }
}

/// Renames `self` in the tokens of a macro invocation, except before `::`.
pub fn rename_in_tokens(tokens: TokenStream) -> TokenStream {
    let mut out = Vec::new();
    let mut iter = tokens.into_iter().peekable();
    while let Some(tree) = iter.next() {
        out.push(match tree {
            TokenTree::Ident(ident) if ident == "self" => {
                let is_path =
                    matches!(iter.peek(), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                if is_path {
                    TokenTree::Ident(ident)
                } else {
                    TokenTree::Ident(hidden_self(ident.span()))
                }
            }
            TokenTree::Group(group) => {
                let mut renamed = Group::new(group.delimiter(), rename_in_tokens(group.stream()));
                renamed.set_span(group.span());
                TokenTree::Group(renamed)
            }
            other => other,
        });
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::rename_self;
    use quote::ToTokens;

    fn renamed(body: &str) -> String {
        let mut block: syn::Block = syn::parse_str(body).unwrap();
        rename_self(&mut block);
        block.to_token_stream().to_string()
    }

    #[test]
    fn renames_the_receiver_in_expressions_closures_and_macros() {
        let out = renamed("{ let f = || self.x; println!(\"{}\", self.y); self.z() }");
        assert_eq!(out.matches("__self").count(), 3, "{out}");
        assert!(!out.replace("__self", "").contains("self"), "{out}");
    }

    #[test]
    fn leaves_module_paths_and_nested_items_alone() {
        let out = renamed("{ m!(self::helper()); fn f(&self) -> u8 { self.0 } Self::C }");
        assert!(out.contains("self :: helper"), "{out}");
        assert!(out.contains("fn f (& self)"), "{out}");
        assert!(out.contains("{ self . 0 }"), "{out}");
        assert!(!out.contains("__self"), "{out}");
    }
}
