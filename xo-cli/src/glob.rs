//! A small glob matcher for method names, like micromatch: `*` (any run of characters except `/`),
//! `**`, `?`, `[abc]`/`[!a-z]` classes, `{a,b}` alternatives (nestable), and `!pattern` exclusions.

/// Expands `{a,b}` alternatives (nested ones too) into plain patterns.
fn expand(p: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut depth = 0;
    let mut open = None;
    let mut commas = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '{' => {
                if depth == 0 {
                    open = Some(i);
                    commas.clear();
                }
                depth += 1;
            }
            ',' if depth == 1 => commas.push(i),
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let start = open.unwrap_or(0);
                    let prefix: String = chars[..start].iter().collect();
                    let suffix: String = chars[i + 1..].iter().collect();
                    let mut bounds = vec![start];
                    bounds.extend(&commas);
                    bounds.push(i);
                    let mut out = Vec::new();
                    for w in bounds.windows(2) {
                        let alt: String = chars[w[0] + 1..w[1]].iter().collect();
                        out.extend(expand(&format!("{prefix}{alt}{suffix}"))?);
                    }
                    return Ok(out);
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced '{{' in pattern {p:?}"));
    }
    Ok(vec![p.to_owned()])
}

fn class_match(class: &[char], c: char) -> bool {
    let (negate, class) = match class.first() {
        Some('!') | Some('^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut i = 0;
    let mut hit = false;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            if class[i] <= c && c <= class[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if class[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    hit != negate
}

fn match_here(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => {
            let globstar = p.get(1) == Some(&'*');
            let rest = if globstar { &p[2..] } else { &p[1..] };
            for i in 0..=s.len() {
                if match_here(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == '/' && !globstar {
                    return false;
                }
            }
            false
        }
        Some('?') => !s.is_empty() && s[0] != '/' && match_here(&p[1..], &s[1..]),
        Some('[') => match p.iter().skip(1).position(|&c| c == ']') {
            Some(len) if len > 0 => {
                !s.is_empty()
                    && class_match(&p[1..=len], s[0])
                    && match_here(&p[len + 2..], &s[1..])
            }
            _ => s.first() == Some(&'[') && match_here(&p[1..], &s[1..]),
        },
        Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && match_here(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && match_here(&p[1..], &s[1..]),
    }
}

/// A compiled set of patterns.
#[derive(Debug, Default)]
pub struct GlobSet {
    include: Vec<Vec<char>>,
    exclude: Vec<Vec<char>>,
}

impl GlobSet {
    /// Compiles patterns (`!p` excludes).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut set = GlobSet::default();
        for p in patterns {
            let p = p.as_ref();
            let (neg, body) = match p.strip_prefix('!') {
                Some(b) => (true, b),
                None => (false, p),
            };
            for e in expand(body)? {
                let chars = e.chars().collect();
                if neg {
                    set.exclude.push(chars);
                } else {
                    set.include.push(chars);
                }
            }
        }
        Ok(set)
    }

    /// Whether `name` is selected: matches an include pattern (or there are none) and no exclusion.
    pub fn is_match(&self, name: &str) -> bool {
        let s: Vec<char> = name.chars().collect();
        (self.include.is_empty() || self.include.iter().any(|p| match_here(p, &s)))
            && !self.exclude.iter().any(|p| match_here(p, &s))
    }
}

/// Whether a string holds glob syntax.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Matches one string against one pattern.
pub fn is_match(pattern: &str, s: &str) -> bool {
    GlobSet::new(&[pattern]).is_ok_and(|g| g.is_match(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let g = GlobSet::new(&["{user,group}.*"]).unwrap();
        assert!(g.is_match("user.create"));
        assert!(g.is_match("group.getAll"));
        assert!(!g.is_match("token.create"));
        assert!(!g.is_match("usergroup.x"));
        assert!(is_match("*.get*", "user.getAll"));
        assert!(is_match("vm.st?rt", "vm.start"));
        assert!(is_match("vm.[a-s]*", "vm.restart"));
        assert!(!is_match("vm.[!a-s]*", "vm.restart"));
        assert!(is_match("{a,b{c,d}}x", "bdx"));
        assert!(is_match("*", "system.getMethodsInfo"));
        assert!(!is_match("a*", "a/b"));
        assert!(is_match("a**", "a/b"));
        assert!(is_match("VM-*", "VM-template"));
        let g = GlobSet::new(&["user.*", "!user.get*"]).unwrap();
        assert!(g.is_match("user.create") && !g.is_match("user.getAll"));
        let g = GlobSet::new(&["!system.*"]).unwrap();
        assert!(g.is_match("user.create") && !g.is_match("system.listMethods"));
        assert!(GlobSet::new(&["{a,b"]).is_err());
        assert!(has_glob("a*") && !has_glob("VM-template"));
    }
}
