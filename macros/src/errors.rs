//! `Errors`: the problems found so far, so that one compile reports every problem of an item
//! at once (each renders as its own `compile_error!`, spanned on the user's token).

/// Errors collected so far, combined into one `syn::Error`.
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

    /// Records one more problem, spanned on `tokens`.
    pub fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Every recorded problem, one `syn::Error` each.
    #[cfg(test)]
    pub fn into_list(self) -> Vec<syn::Error> {
        self.0.into_iter().flatten().collect()
    }

    /// Every recorded problem as `compile_error!`s (nothing when there were none).
    pub fn into_compile_errors(self) -> proc_macro2::TokenStream {
        self.0
            .map(syn::Error::into_compile_error)
            .unwrap_or_default()
    }
}
