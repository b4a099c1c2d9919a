//! What cs-pulse reads: the four input topics, the two event inputs among them, and the
//! partitions that tie a usage and a support partition to one engine.

/// An input topic's kind: what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// Usage events.
    Usage,
    /// Support and feedback events.
    Support,
    /// Account records.
    Accounts,
    /// Team records.
    Teams,
}

impl Input {
    /// Every input, in the order of the configuration's topics.
    pub const ALL: [Input; 4] = [Input::Usage, Input::Support, Input::Accounts, Input::Teams];

    /// Its position in [`Input::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its name, as in `--usage` or the dead-letter file's `source`.
    pub fn as_str(self) -> &'static str {
        ["usage", "support", "accounts", "teams"][self.index()]
    }
}

/// One of the two event inputs, usage or support: co-partitioned topics whose partition N
/// both feed engine N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventInput {
    /// Usage events.
    Usage,
    /// Support and feedback events.
    Support,
}

impl EventInput {
    /// Both, usage first.
    pub const ALL: [EventInput; 2] = [EventInput::Usage, EventInput::Support];

    /// Its position in [`EventInput::ALL`]: 0 usage, 1 support.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The input topic kind.
    pub fn input(self) -> Input {
        match self {
            EventInput::Usage => Input::Usage,
            EventInput::Support => Input::Support,
        }
    }
}

/// An input partition: partition N of the usage topic and of the support topic, and the
/// engine that owns their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition(pub i32);

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One Kafka partition of an event input: what a watermark and an offset belong to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InputPartition {
    /// Usage or support.
    pub input: EventInput,
    /// The partition.
    pub partition: Partition,
}

/// `usage-0`, `support-3`: short, for the log's lists of partitions.
impl std::fmt::Debug for InputPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.input.input().as_str(), self.partition.0)
    }
}
