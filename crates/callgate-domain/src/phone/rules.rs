//! libphonenumber's validity rule, with each country's patterns compiled once.
//!
//! `phonenumber::parse` + `is_valid` answer correctly but slowly: every pattern match goes
//! through a process-wide regex cache behind one mutex, keyed by the pattern text (hashed on
//! every use), and parsing runs the general text extractor first. On the trigger path that was
//! the largest single cost of accepting a call. Input here is already in E.164 shape, so this
//! module applies the same metadata the same way (country code, then the region the number
//! belongs to, then the number types) with regexes compiled once per country code.
//!
//! Numbers where libphonenumber's parser could change the digits (a national prefix written
//! after the country code, a leading zero) are not decided here: `fast_check` answers `None`
//! and the caller asks the crate. A test compares both answers on every example number in
//! the metadata and on random numbers.

use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Regex, RegexBuilder};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

/// A metadata pattern as the crate compiles it (whitespace in the XML source is layout),
/// anchored at the start: libphonenumber's test is "a match starting at 0".
fn anchored(src: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{src})"))
        .ignore_whitespace(true)
        .build()
}

/// One number type's rule: allowed lengths and the national-number pattern.
struct TypeRule {
    lengths: Vec<u16>,
    pattern: Regex,
}

impl TypeRule {
    fn new(d: &Descriptor) -> Option<TypeRule> {
        let pattern = anchored(d.national_number().as_str()).ok()?;
        Some(TypeRule {
            lengths: d.possible_length().to_vec(),
            pattern,
        })
    }

    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.pattern.is_match(national)
    }
}

/// One region's rules.
struct RegionRule {
    /// Decides which region of a shared country code a number belongs to.
    leading_digits: Option<Regex>,
    general: TypeRule,
    /// Every number type that makes a number valid (fixed line, mobile, toll free, ...).
    types: Vec<TypeRule>,
}

impl RegionRule {
    fn new(m: &Metadata) -> Option<RegionRule> {
        let d = m.descriptors();
        // Any one type makes a number valid, so the common ones are tried first.
        let kinds = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        let mut types = Vec::new();
        for k in kinds.into_iter().flatten() {
            types.push(TypeRule::new(k)?);
        }
        Some(RegionRule {
            leading_digits: match m.leading_digits() {
                Some(r) => Some(anchored(r.as_str()).ok()?),
                None => None,
            },
            general: TypeRule::new(d.general())?,
            types,
        })
    }

    /// libphonenumber's "number type is not UNKNOWN".
    fn has_type(&self, national: &str) -> bool {
        self.general.matches(national) && self.types.iter().any(|t| t.matches(national))
    }
}

/// The regions sharing one country calling code, in the metadata's order. Each region's
/// patterns are compiled on first use: +1 alone has 25 regions, and a number from the United
/// States never needs the other 24.
struct CodeRule {
    regions: Vec<LazyRegion>,
    /// When it matches at the start, the parser may strip a national prefix: every region's
    /// prefix rule in one pattern, compiled up front (every number of the code is checked
    /// against all of them; the 25 regions of +1 share one).
    national_prefix: Option<Regex>,
}

struct LazyRegion {
    meta: &'static Metadata,
    rule: OnceLock<Option<RegionRule>>,
}

impl LazyRegion {
    fn rule(&self) -> Option<&RegionRule> {
        self.rule
            .get_or_init(|| RegionRule::new(self.meta))
            .as_ref()
    }
}

/// What the metadata says of a candidate country calling code, remembered per code: the
/// metadata's own lookup builds a list of the code's regions on every call.
#[derive(Clone)]
enum Code {
    /// No country has this code.
    Unknown,
    /// A country code; its rules, unless its patterns do not compile here.
    Known(Option<Arc<CodeRule>>),
}

fn code(code: u16) -> Code {
    static CODES: OnceLock<RwLock<HashMap<u16, Code>>> = OnceLock::new();
    let codes = CODES.get_or_init(Default::default);
    if let Some(c) = codes.read().ok().and_then(|m| m.get(&code).cloned()) {
        return c;
    }
    let found = match DATABASE.region(&code) {
        None => Code::Unknown,
        Some(_) => Code::Known(build(code).map(Arc::new)),
    };
    if let Ok(mut m) = codes.write() {
        m.insert(code, found.clone());
    }
    found
}

/// `None` when the code is unknown.
fn build(code: u16) -> Option<CodeRule> {
    let ids = DATABASE.region(&code)?;
    let metas: Vec<&'static Metadata> = if ids.len() == 1 {
        // A single region (or a non-geographic entity, "001"): its metadata decides.
        vec![DATABASE.by_code(&code)?.into_iter().next()?]
    } else {
        ids.into_iter()
            .map(|id| DATABASE.by_id(id))
            .collect::<Option<Vec<_>>>()?
    };
    // Without a parsing rule of its own, the parser uses the national prefix itself.
    let mut prefixes: Vec<String> = Vec::new();
    for meta in &metas {
        let src = match (meta.national_prefix_for_parsing(), meta.national_prefix()) {
            (Some(r), _) => r.as_str().to_owned(),
            (None, Some(p)) if !p.is_empty() => regex::escape(p),
            (None, _) => continue,
        };
        if !prefixes.contains(&src) {
            prefixes.push(src);
        }
    }
    let national_prefix = if prefixes.is_empty() {
        None
    } else {
        let alternatives: Vec<String> = prefixes.iter().map(|p| format!("(?:{p})")).collect();
        Some(anchored(&alternatives.join("|")).ok()?)
    };
    let regions = metas
        .into_iter()
        .map(|meta| LazyRegion {
            meta,
            rule: OnceLock::new(),
        })
        .collect();
    Some(CodeRule {
        regions,
        national_prefix,
    })
}

/// Whether `digits` (an E.164 number without its `+`) is valid, when that can be decided
/// without libphonenumber's parser; `None` means "ask the crate".
pub(super) fn fast_check(digits: &str) -> Option<bool> {
    // The country code is the first 1-3 digits that name one (codes are prefix-free).
    let (rule, national) = (1..=3).filter(|n| *n < digits.len()).find_map(|n| {
        match code(digits[..n].parse().ok()?) {
            Code::Unknown => None,
            Code::Known(rule) => Some((rule, &digits[n..])),
        }
    })?;
    let rule = rule?;
    if national.starts_with('0') {
        return None;
    }
    if rule
        .national_prefix
        .as_ref()
        .is_some_and(|p| p.is_match(national))
    {
        return None;
    }
    // Below, a region whose patterns do not compile leaves the decision to the crate (`?`).
    if let [only] = &rule.regions[..] {
        return Some(only.rule()?.has_type(national));
    }
    // Several regions share the code: the number belongs to the first whose leading digits
    // match, or failing those, the first under which it has a type.
    for lazy in &rule.regions {
        let region = lazy.rule()?;
        match &region.leading_digits {
            Some(p) if p.is_match(national) => return Some(region.has_type(national)),
            Some(_) => {}
            None if region.has_type(national) => return Some(true),
            None => {}
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The crate's answer for `+digits`, through the full parser.
    fn slow(digits: &str) -> Option<String> {
        super::super::slow_parse(&format!("+{digits}"))
            .ok()
            .map(|n| n.0)
    }

    /// Where the fast path answers, it answers as the crate does, and a valid number keeps its
    /// digits.
    fn agree(digits: &str) {
        // `E164::parse` checks the shape first.
        if !super::super::has_e164_shape(&format!("+{digits}")) {
            return;
        }
        let Some(fast) = fast_check(digits) else {
            return;
        };
        let slow = slow(digits);
        assert_eq!(
            fast,
            slow.is_some(),
            "+{digits}: fast {fast}, crate {slow:?}"
        );
        if let Some(s) = slow {
            assert_eq!(
                s,
                format!("+{digits}"),
                "+{digits} was rewritten by the crate"
            );
        }
    }

    fn examples() -> Vec<String> {
        let mut out = Vec::new();
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let all = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            for desc in all.into_iter().flatten() {
                if let Some(ex) = desc.example() {
                    out.push(format!("{}{ex}", meta.country_code()));
                }
            }
        }
        out
    }

    #[test]
    fn every_metadata_example_and_its_neighbours_agree_with_the_crate() {
        let examples = examples();
        assert!(examples.len() > 1000, "only {} examples", examples.len());
        let mut decided = 0;
        for ex in &examples {
            let mut variants = vec![ex.clone(), format!("{ex}0"), format!("{ex}9")];
            variants.push(ex[..ex.len() - 1].to_owned());
            for i in 1..ex.len() {
                // Each digit changed once: neighbours of valid numbers are the hard cases.
                let mut v = ex.clone().into_bytes();
                v[i] = b'0' + (v[i] - b'0' + 5) % 10;
                variants.push(String::from_utf8(v).unwrap_or_default());
            }
            for v in variants {
                if fast_check(&v).is_some() {
                    decided += 1;
                }
                agree(&v);
            }
        }
        // Most numbers must take the fast path, or it is pointless.
        assert!(decided * 10 > examples.len() * 8, "decided {decided}");
    }

    #[test]
    fn north_american_numbers_take_the_fast_path() {
        assert_eq!(fast_check("14155550100"), Some(true));
        assert_eq!(fast_check("15550001234"), Some(false));
        assert_eq!(fast_check("442079460958"), Some(true));
        // A national prefix after the country code: the crate decides.
        assert_eq!(fast_check("4402079460958"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn random_numbers_agree_with_the_crate(digits in "[1-9][0-9]{7,14}") {
            agree(&digits);
        }

        #[test]
        fn random_numbers_behind_busy_codes_agree(
            code in prop::sample::select(vec!["1", "7", "33", "39", "44", "49", "52", "54", "55", "61", "81", "86", "91", "234", "358", "972"]),
            rest in "[0-9]{6,12}",
        ) {
            agree(&format!("{code}{rest}"));
        }
    }
}
