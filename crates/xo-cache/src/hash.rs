//! Hash maps and sets for the cache's internal tables, with ahash instead of SipHash: a full load hashes every
//! record's ref several times (records, objects, dependency indexes) and SipHash was ~14% of a 10,000-VM sync.
//! ahash keeps per-process random keys.

/// `std::collections::HashMap` with ahash.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// `std::collections::HashSet` with ahash.
pub(crate) type HashSet<K> = std::collections::HashSet<K, ahash::RandomState>;
