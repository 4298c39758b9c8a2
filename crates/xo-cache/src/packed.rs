//! `Packed`: a JSON text kept zstd-compressed against a dictionary shared by the texts of its kind (an XAPI class
//! or an XO type): the cache's form for the records and objects of a pool (a 10,000-VM pool holds ~130,000 of
//! them, ~100 MiB as text).
//!
//! A kind's dictionary is learnt from its first texts (their concatenation, [`DICT_BYTES`] in all): texts packed
//! before it exists are packed without one, texts shorter than [`MIN_PACKED`] are kept as they are. Packing is
//! deterministic for a given dictionary, so two texts packed against the same one are equal exactly when their
//! bytes are; [`Packed::same_text`] falls back to comparing the texts otherwise.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::RwLock;
use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

/// zstd's fastest level: texts are packed on the sync path.
const LEVEL: i32 = 1;

/// How much of a kind's first texts makes its dictionary.
pub const DICT_BYTES: usize = 16 * 1024;

/// Texts shorter than this are not compressed (a zstd frame costs a dozen bytes).
pub const MIN_PACKED: usize = 48;

/// A kind's prepared dictionary (both directions).
pub struct Dict {
    cdict: CDict<'static>,
    ddict: DDict<'static>,
}

impl std::fmt::Debug for Dict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dict")
    }
}

enum Slot {
    /// Collecting the first texts.
    Learning(Vec<u8>),
    Ready(Arc<Dict>),
}

/// What a text is: an XAPI record or an XO object; with its class or type name, it names the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A XAPI record (named by its lower-case class).
    Record,
    /// An XO object (named by its type).
    Object,
}

/// Dictionaries by family and name, shared by every pool (a dictionary only holds example texts of the cache's own
/// data).
static DICTS: LazyLock<[Dicts; 2]> = LazyLock::new(Default::default);

/// One family's dictionaries by name.
type Dicts = RwLock<HashMap<Box<str>, Slot>>;

thread_local! {
    static CCTX: RefCell<CCtx<'static>> = RefCell::new(CCtx::create());
    static DCTX: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

/// The dictionary of `name` in `family`, learning from `text` while there is none yet.
fn dict_for(family: Family, name: &str, text: &[u8]) -> Option<Arc<Dict>> {
    let dicts = &DICTS[family as usize];
    if let Some(Slot::Ready(d)) = dicts.read().get(name) {
        return Some(d.clone());
    }
    let mut map = dicts.write();
    let slot = map
        .entry(name.into())
        .or_insert_with(|| Slot::Learning(Vec::with_capacity(DICT_BYTES)));
    match slot {
        Slot::Ready(d) => Some(d.clone()),
        Slot::Learning(buf) => {
            let take = text.len().min(DICT_BYTES - buf.len());
            buf.extend_from_slice(&text[..take]);
            if buf.len() < DICT_BYTES {
                return None;
            }
            let dict = Arc::new(Dict {
                cdict: CDict::try_create(buf, LEVEL)?,
                ddict: DDict::try_create(buf)?,
            });
            *slot = Slot::Ready(dict.clone());
            // This text went into the dictionary: packing it against it costs nothing to decode later.
            Some(dict)
        }
    }
}

/// A text in compact form.
#[derive(Debug, Clone)]
pub enum Packed {
    /// Kept as it is (short, or compression did not pay).
    Plain(Box<str>),
    /// zstd frame (with the text's size), against `dict` when there is one.
    Zstd {
        dict: Option<Arc<Dict>>,
        bytes: Box<[u8]>,
    },
}

impl Packed {
    /// Pack `text`, a text of `family` named `name` (e.g. `(Record, "vm")`, `(Object, "VM")`).
    pub fn new(family: Family, name: &str, text: &str) -> Packed {
        if text.len() < MIN_PACKED {
            return Packed::Plain(text.into());
        }
        let dict = dict_for(family, name, text.as_bytes());
        let mut out: Vec<u8> = Vec::with_capacity(zstd_safe::compress_bound(text.len()));
        let done = CCTX.with(|c| {
            let mut c = c.borrow_mut();
            match &dict {
                Some(d) => c.compress_using_cdict(&mut out, text.as_bytes(), &d.cdict),
                None => c.compress(&mut out, text.as_bytes(), LEVEL),
            }
        });
        match done {
            Ok(n) if n < text.len() => Packed::Zstd {
                dict,
                bytes: out.into_boxed_slice(),
            },
            _ => Packed::Plain(text.into()),
        }
    }

    /// Bytes held (the text's own size when plain).
    pub fn packed_len(&self) -> usize {
        match self {
            Packed::Plain(s) => s.len(),
            Packed::Zstd { bytes, .. } => bytes.len(),
        }
    }

    /// Append the text to `out`.
    pub fn unpack_into(&self, out: &mut String) {
        match self {
            Packed::Plain(s) => out.push_str(s),
            Packed::Zstd { .. } => out.push_str(&self.text()),
        }
    }

    /// The text.
    pub fn text(&self) -> Cow<'_, str> {
        let (dict, bytes) = match self {
            Packed::Plain(s) => return Cow::Borrowed(s),
            Packed::Zstd { dict, bytes } => (dict, bytes),
        };
        let size = zstd_safe::get_frame_content_size(bytes)
            .ok()
            .flatten()
            .unwrap_or(0) as usize;
        let mut out: Vec<u8> = Vec::with_capacity(size);
        let done = DCTX.with(|c| {
            let mut c = c.borrow_mut();
            match dict {
                Some(d) => c.decompress_using_ddict(&mut out, bytes, &d.ddict),
                None => c.decompress(&mut out, bytes),
            }
        });
        // Frames are only ever made by `Packed::new` from a `str`: both steps always succeed.
        match done.ok().and_then(|_| String::from_utf8(out).ok()) {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(""),
        }
    }

    /// Whether both hold the same text (compares bytes when packed against the same dictionary).
    pub fn same_text(&self, other: &Packed) -> bool {
        match (self, other) {
            (Packed::Plain(a), Packed::Plain(b)) => a == b,
            (Packed::Zstd { dict: da, bytes: a }, Packed::Zstd { dict: db, bytes: b })
                if same_dict(da, db) =>
            {
                a == b
            }
            _ => self.text() == other.text(),
        }
    }
}

fn same_dict(a: &Option<Arc<Dict>>, b: &Option<Arc<Dict>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(i: usize) -> String {
        format!(
            r#"{{"id":"{i:08}-4a5b-6c7d-8e9f-0123456789ab","type":"VM","name_label":"vm {i}","power_state":"Running","memory":{{"size":2147483648}},"tags":[]}}"#
        )
    }

    #[test]
    fn round_trips_before_and_after_the_dictionary() {
        let kind = "test:round_trip";
        let texts: Vec<String> = (0..400).map(vm).collect();
        let packed: Vec<Packed> = texts
            .iter()
            .map(|t| Packed::new(Family::Object, kind, t))
            .collect();
        for (t, p) in texts.iter().zip(&packed) {
            assert_eq!(p.text(), t.as_str());
            let mut s = String::from("<");
            p.unpack_into(&mut s);
            assert_eq!(s, format!("<{t}"));
        }
        // The dictionary was learnt from the first texts; the later ones are packed against it, much smaller.
        let first = &packed[0];
        let last = &packed[399];
        assert!(matches!(first, Packed::Zstd { dict: None, .. }));
        assert!(matches!(last, Packed::Zstd { dict: Some(_), .. }));
        assert!(
            last.packed_len() * 3 < texts[399].len(),
            "{}",
            last.packed_len()
        );
    }

    #[test]
    fn short_texts_stay_plain_and_equality_is_by_text() {
        let kind = "test:equality";
        let short = Packed::new(Family::Object, kind, "{}");
        assert!(matches!(short, Packed::Plain(_)));
        assert_eq!(short.text(), "{}");
        let a = Packed::new(Family::Object, kind, &vm(1));
        // Learn the dictionary, then pack the same text again: other bytes, same text.
        for i in 2..400 {
            Packed::new(Family::Object, kind, &vm(i));
        }
        let b = Packed::new(Family::Object, kind, &vm(1));
        assert!(a.same_text(&b) && b.same_text(&a));
        assert!(b.same_text(&Packed::new(Family::Object, kind, &vm(1))));
        assert!(!b.same_text(&Packed::new(Family::Object, kind, &vm(2))));
        assert!(!a.same_text(&short));
        assert_eq!(Packed::new(Family::Object, kind, "").text(), "");
    }
}
