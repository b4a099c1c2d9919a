//! The hash maps of cs-pulse's state: the engine's and the dimension tables'.

/// foldhash, several times faster than SipHash on short ids, which the profile showed on
/// every event and entity. (cs-pulse hashes only its own state's keys; iteration order
/// never reaches an output.) hashbrown's own map, for `entry_ref`: an id is copied into
/// the state only when it is new.
pub(crate) type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;
/// See [`HashMap`].
pub(crate) type HashSet<K> = hashbrown::HashSet<K, foldhash::fast::RandomState>;
