//! Label matching without the `regex` crate (which would add hundreds of KiB to every component): globs with
//! `*` (any run) and `?` (one character), anchored at both ends.

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    chars: Vec<char>,
    /// The pattern as bytes when it is ASCII (almost always): ASCII text then matches with no allocation.
    ascii: Option<Vec<u8>>,
}

impl Glob {
    /// A glob of `pattern` (`*` any run, `?` any one character, the rest literal).
    pub fn new(pattern: &str) -> Self {
        Glob { chars: pattern.chars().collect(), ascii: pattern.is_ascii().then(|| pattern.as_bytes().to_vec()) }
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match &self.ascii {
            Some(p) if text.is_ascii() => glob(p, text.as_bytes(), b'*', b'?'),
            _ => glob(&self.chars, &text.chars().collect::<Vec<_>>(), '*', '?'),
        }
    }
}

/// Iterative matching with one backtrack point: linear in practice, no recursion.
fn glob<T: PartialEq + Copy>(p: &[T], t: &[T], star: T, any: T) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == any || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == star {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = backtrack {
            pi = sp + 1;
            ti = st + 1;
            backtrack = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == star)
}

/// One-off match of `pattern` against `text`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).matches(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("pod-template-hash=*", "pod-template-hash=5bb8c89b95"));
        assert!(glob_match("*.kubernetes.io/*", "app.kubernetes.io/name=x"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("app=*", "team=x"));
        assert!(glob_match("*=*", "k=v"));
        assert!(glob_match("ünï*", "ünïcødé"));
    }
}
