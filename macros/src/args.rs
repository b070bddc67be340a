//! The attribute's options: `#[offload(pool = DB, limit = 2, timeout = "250ms",
//! timeout_error = to_db_error, sync = name, crate = path)]`, and `#[offload(skip)]` on a
//! method of an `#[offload]` impl block or trait.
//!
//! One parser, one error style: every option is `key = value` (`skip` stands alone), each key
//! at most once. A problem with one option (unknown key, repeated key, missing or bad value)
//! is recorded with a span on the user's token and parsing goes on at the next comma, so all
//! problems of one attribute are reported together.

use crate::errors::Errors;
use proc_macro2::{TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, Lit, LitStr, Path, Token};

/// Every option key, named once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Key {
    /// `pool = DB`
    Pool,
    /// `limit = N`
    Limit,
    /// `timeout = "250ms"`
    Timeout,
    /// `timeout_error = path`
    TimeoutError,
    /// `sync = name`
    Sync,
    /// `crate = path`
    Crate,
    /// `skip`, on a method of an `#[offload]` impl block or trait
    Skip,
}

impl Key {
    /// Every key, in the order the error messages list them.
    pub const ALL: [Key; 7] = [
        Key::Pool,
        Key::Limit,
        Key::Timeout,
        Key::TimeoutError,
        Key::Sync,
        Key::Crate,
        Key::Skip,
    ];

    /// The key as written.
    pub fn name(self) -> &'static str {
        match self {
            Key::Pool => "pool",
            Key::Limit => "limit",
            Key::Timeout => "timeout",
            Key::TimeoutError => "timeout_error",
            Key::Sync => "sync",
            Key::Crate => "crate",
            Key::Skip => "skip",
        }
    }

    /// The key written `name`, if any.
    fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|key| key.name() == name)
    }

    /// How the option is written, for error messages.
    fn example(self) -> &'static str {
        match self {
            Key::Pool => "a static that dereferences to `offthread::Pool`, or a `&Pool` expression, e.g. `pool = DB`",
            Key::Limit => "how many bodies may run at once, e.g. `limit = 4`",
            Key::Timeout => "a duration string such as `timeout = \"250ms\"` (units `ms`, `s`, `m`)",
            Key::TimeoutError => "a function `fn(offthread::Error) -> E` that makes the function's error type from a timeout, e.g. `timeout_error = to_db_error`",
            Key::Sync => "a function name, e.g. `sync = find_user_blocking`",
            Key::Crate => "the path of the renamed offthread crate, e.g. `crate = my_offthread`",
            Key::Skip => "`#[offload(skip)]`, alone, on a method of an #[offload] impl block or trait",
        }
    }
}

/// The keys as a list for error messages: "`pool`, `limit`, ... and `skip`".
pub fn key_list() -> String {
    let names: Vec<String> = Key::ALL
        .iter()
        .map(|key| format!("`{}`", key.name()))
        .collect();
    let (last, rest) = names.split_last().expect("there are keys");
    format!("{} and {last}", rest.join(", "))
}

/// The parsed options. A field is `None` when its option was not given (or was given with a
/// bad value, in which case an error was recorded).
#[derive(Default, Clone)]
pub struct Args {
    /// `pool = EXPR`: a path to a static that dereferences to `Pool`, or any `&Pool` expression.
    pub pool: Option<Expr>,
    /// `limit = N`: the number of bodies of this function that may run at once.
    pub limit: Option<Expr>,
    /// `timeout = "250ms"`.
    pub timeout: Option<Timeout>,
    /// `timeout_error = EXPR`: a `fn(offthread::Error) -> E` for the timeout's error.
    pub timeout_error: Option<Expr>,
    /// `sync = name`: also emit the original blocking function under this name.
    pub sync: Option<Ident>,
    /// `crate = path`: the path of the facade crate; `::offthread` when absent.
    pub krate: Option<Path>,
    /// `skip`: leave this method of an impl block or trait alone.
    pub skip: Option<Ident>,
    /// Every key given, as written, where errors about a misplaced option point.
    pub given: Vec<(Key, Ident)>,
    /// The keys a method of an impl block took from the block's options.
    pub inherited: Vec<Key>,
    /// Not an option: the type an `#[offload]` impl block is for (its last path segment),
    /// which names the block's methods in their figures (`module::Type::method`).
    pub owner: Option<String>,
}

/// `timeout = "250ms"`, checked and converted.
#[derive(Clone)]
pub struct Timeout {
    /// The `timeout` key, where "this function cannot have a timeout" errors point.
    pub key: Ident,
    /// The user's literal, where type errors about the timeout point.
    pub lit: LitStr,
    /// The duration in milliseconds.
    pub millis: u64,
}

impl Args {
    /// Parses the attribute's tokens. Never fails as a whole: problems go to `errors`, and the
    /// options that parsed are kept.
    pub fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
        let mut args = Args::default();
        let parser = |input: ParseStream| {
            while !input.is_empty() {
                if let Err(err) = args.parse_one(input) {
                    errors.push(err);
                    skip_to_comma(input);
                }
                if !input.is_empty() {
                    input.parse::<Token![,]>()?;
                }
            }
            Ok(())
        };
        // `parse_one` leaves the stream at a comma or at the end, so this cannot fail; keep
        // the error anyway rather than trusting that.
        if let Err(err) = parser.parse2(tokens) {
            errors.push(err);
        }
        args
    }

    /// The options of a method inside an `#[offload]` impl block: the method's own, then the
    /// block's for every option the method does not give.
    pub fn or(self, block: &Args) -> Args {
        let mut given = self.given;
        let mut inherited = Vec::new();
        for (key, ident) in &block.given {
            if !given.iter().any(|(seen, _)| seen == key) {
                given.push((*key, ident.clone()));
                inherited.push(*key);
            }
        }
        Args {
            pool: self.pool.or_else(|| block.pool.clone()),
            limit: self.limit.or_else(|| block.limit.clone()),
            timeout: self.timeout.or_else(|| block.timeout.clone()),
            timeout_error: self.timeout_error.or_else(|| block.timeout_error.clone()),
            sync: self.sync.or_else(|| block.sync.clone()),
            krate: self.krate.or_else(|| block.krate.clone()),
            skip: self.skip,
            given,
            inherited,
            owner: self.owner.or_else(|| block.owner.clone()),
        }
    }

    /// Parses one `key = value` (or `skip`).
    fn parse_one(&mut self, input: ParseStream) -> syn::Result<()> {
        let keys = key_list();
        // `crate` is a keyword: `parse_any` accepts it like any other identifier.
        let ident = Ident::parse_any(input).map_err(|err| {
            syn::Error::new(
                err.span(),
                format!("expected an option such as `limit = 4`; the options are {keys}"),
            )
        })?;
        let name = ident.to_string();
        let Some(key) = Key::from_name(&name) else {
            return Err(syn::Error::new(
                ident.span(),
                format!("unknown option `{name}`; the options are {keys}"),
            ));
        };
        // A key counts as given even when its value was bad, so a repeat is still reported.
        if self.given.iter().any(|(seen, _)| *seen == key) {
            return Err(syn::Error::new(
                ident.span(),
                format!("`{name}` is given more than once; each of {keys} may appear once"),
            ));
        }
        self.given.push((key, ident.clone()));
        if key == Key::Skip {
            if input.peek(Token![=]) {
                return Err(input.error("`skip` takes no value: write `#[offload(skip)]`"));
            }
            self.skip = Some(ident);
            return Ok(());
        }
        if !input.peek(Token![=]) {
            return Err(syn::Error::new(
                ident.span(),
                format!("`{name}` needs a value: {}", key.example()),
            ));
        }
        input.parse::<Token![=]>()?;
        if input.is_empty() || input.peek(Token![,]) {
            return Err(syn::Error::new(
                ident.span(),
                format!("`{name}` needs a value: {}", key.example()),
            ));
        }
        match key {
            Key::Pool => self.pool = Some(input.parse()?),
            Key::Limit => self.limit = Some(parse_limit(input)?),
            Key::Timeout => self.timeout = Some(parse_timeout(ident, input)?),
            Key::TimeoutError => self.timeout_error = Some(input.parse()?),
            Key::Sync => {
                self.sync = Some(input.parse().map_err(|err| {
                    syn::Error::new(
                        err.span(),
                        "`sync` takes a function name: `sync = find_user_blocking`",
                    )
                })?);
            }
            Key::Crate => self.krate = Some(parse_crate(input)?),
            Key::Skip => unreachable!("`skip` takes no value and returned above"),
        }
        if !input.is_empty() && !input.peek(Token![,]) {
            return Err(input.error(format!(
                "expected `,` after the value of `{name}`: {}",
                key.example()
            )));
        }
        Ok(())
    }
}

/// `limit = N`: any constant expression of type `usize`; a literal is checked here.
fn parse_limit(input: ParseStream) -> syn::Result<Expr> {
    let expr: Expr = input.parse()?;
    if let Expr::Lit(lit) = &expr {
        let Lit::Int(int) = &lit.lit else {
            return Err(syn::Error::new_spanned(
                &lit.lit,
                "`limit` takes a whole number of bodies that may run at once, e.g. `limit = 4`",
            ));
        };
        let n: usize = int.base10_parse()?;
        if n == 0 {
            return Err(syn::Error::new_spanned(
                int,
                "`limit = 0` would never let the body run: the limit must be at least 1",
            ));
        }
    }
    Ok(expr)
}

/// `timeout = "250ms"`: a whole number followed by `ms`, `s` or `m`.
fn parse_timeout(key: Ident, input: ParseStream) -> syn::Result<Timeout> {
    let lit: LitStr = match input.parse::<Lit>() {
        Ok(Lit::Str(lit)) => lit,
        Ok(other) => {
            return Err(syn::Error::new_spanned(
                other,
                "`timeout` takes a duration string such as `timeout = \"250ms\"` (units `ms`, `s`, `m`)",
            ))
        }
        Err(_) => {
            return Err(input.error(
                "`timeout` takes a duration string such as `timeout = \"250ms\"` (units `ms`, `s`, `m`)",
            ))
        }
    };
    let millis = parse_duration(&lit.value()).ok_or_else(|| {
        syn::Error::new_spanned(
            &lit,
            format!(
                "`{}` is not a duration: write a whole number followed by `ms`, `s` or `m`, such as \"250ms\", \"2s\" or \"1m\"",
                lit.value()
            ),
        )
    })?;
    if millis == 0 {
        return Err(syn::Error::new_spanned(
            &lit,
            "a zero timeout would fail every call: give a duration above zero, such as \"250ms\"",
        ));
    }
    Ok(Timeout { key, lit, millis })
}

/// `"250ms"` -> 250, `"2s"` -> 2000, `"1m"` -> 60000; `None` for anything else or an overflow.
fn parse_duration(text: &str) -> Option<u64> {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

/// `crate = path` (or `crate = "path"`, as tokio and serde spell it).
fn parse_crate(input: ParseStream) -> syn::Result<Path> {
    let message =
        "`crate` takes the path of the renamed offthread crate, e.g. `crate = my_offthread`";
    if input.peek(syn::LitStr) {
        let lit: LitStr = input.parse()?;
        return lit
            .parse_with(Path::parse_mod_style)
            .map_err(|_| syn::Error::new_spanned(&lit, message));
    }
    Path::parse_mod_style(input).map_err(|err| syn::Error::new(err.span(), message))
}

/// After an error, skips the rest of this option so the next one is still checked.
fn skip_to_comma(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(p) if p.as_char() == ',') {
                return Ok(((), rest));
            }
            rest = next;
        }
        Ok(((), rest))
    });
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("2s"), Some(2_000));
        assert_eq!(parse_duration("1m"), Some(60_000));
        assert_eq!(parse_duration("fast"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("ms"), None);
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("99999999999999999999m"), None);
    }
}
