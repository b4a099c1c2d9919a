//! Resolved readers: a writer schema compiled once against one of cs-pulse's reader
//! schemas into a plan of steps, then run over each record's bytes without a schema walk.
//!
//! Resolution follows the Avro specification: fields match by name; a writer field the
//! reader does not know is skipped; a reader field the writer lacks takes its default
//! (null for cs-pulse's optional fields) or, when it has none, makes the writer schema
//! incompatible; int promotes to long, bytes to string; enums match by symbol; unions
//! resolve branch by branch, and a branch that cannot be read fails only the records that
//! use it. cs-pulse also reads a string where its schema has an enum (the value is then
//! checked like a JSON string) and converts timestamp-micros and -nanos to milliseconds.

use std::collections::HashMap;

use apache_avro::schema::{InnerDecimalSchema, UuidSchema};
use apache_avro::Schema;

use crate::decode::fields::{Field, Record};
use crate::model::{Reason, Rejection};

/// Most fields a reader schema may have.
pub(crate) const MAX_FIELDS: usize = 16;

/// What a reader field holds, as far as resolution cares.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Str,
    Long,
    Int,
    Enum(Vec<String>),
    StrMap,
}

/// One field of a reader schema.
#[derive(Debug, Clone)]
pub(crate) struct ReaderField {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    /// A union with null.
    pub(crate) nullable: bool,
    /// Has a default, so a writer may lack it.
    pub(crate) has_default: bool,
}

/// A reader schema's fields, in order.
#[derive(Debug, Clone)]
pub(crate) struct ReaderSpec {
    pub(crate) name: &'static str,
    pub(crate) fields: Vec<ReaderField>,
}

impl ReaderSpec {
    /// The spec of a parsed reader schema (a record of the kinds above).
    pub(crate) fn of(name: &'static str, schema: &Schema) -> Result<Self, String> {
        let Schema::Record(r) = schema else { return Err(format!("{name}: not a record")) };
        if r.fields.len() > MAX_FIELDS {
            return Err(format!("{name}: more than {MAX_FIELDS} fields"));
        }
        let mut fields = Vec::new();
        for f in &r.fields {
            let (nullable, base) = match &f.schema {
                Schema::Union(u) => {
                    let non_null: Vec<&Schema> = u.variants().iter().filter(|v| **v != Schema::Null).collect();
                    match non_null.as_slice() {
                        [one] => (true, *one),
                        _ => return Err(format!("{name}.{}: only unions of null and one type are supported", f.name)),
                    }
                }
                s => (false, s),
            };
            let kind = match base {
                Schema::String => Kind::Str,
                Schema::Long | Schema::TimestampMillis => Kind::Long,
                Schema::Int => Kind::Int,
                Schema::Enum(e) => Kind::Enum(e.symbols.clone()),
                Schema::Map(m) if *m.types == Schema::String => Kind::StrMap,
                other => return Err(format!("{name}.{}: unsupported reader type {other:?}", f.name)),
            };
            fields.push(ReaderField { name: f.name.clone(), kind, nullable, has_default: f.default.is_some() });
        }
        Ok(Self { name, fields })
    }
}

/// How to get past a writer value that no reader field takes.
#[derive(Debug, Clone)]
enum Skip {
    Zero,
    Varint,
    Fixed(usize),
    /// A length-prefixed run (bytes, string).
    Bytes,
    Array(Box<Skip>),
    Map(Box<Skip>),
    Union(Vec<Skip>),
    Record(Vec<Skip>),
}

/// How to read a writer value into a reader field.
#[derive(Debug, Clone)]
enum Take {
    Null,
    Str,
    /// A whole number, divided by this (timestamps in micros or nanos).
    Long(i64),
    Enum(Vec<String>),
    /// Present, but nothing cs-pulse reads (the usage event's `properties`).
    Ignore(Skip),
    /// One per writer branch; a branch the reader cannot take fails records that use it.
    Union(Vec<Result<Take, String>>),
}

#[derive(Debug, Clone)]
enum Step {
    Take { slot: usize, take: Take },
    Skip(Skip),
}

/// A writer schema resolved against a reader schema, ready to decode records.
#[derive(Debug)]
pub(crate) struct Plan {
    steps: Vec<Step>,
    names: Vec<String>,
}

/// Named types of a writer schema, for its references.
struct Names<'s>(HashMap<String, &'s Schema>);

impl<'s> Names<'s> {
    fn of(schema: &'s Schema) -> Self {
        let mut names = Names(HashMap::new());
        names.collect(schema, 0);
        names
    }

    fn collect(&mut self, s: &'s Schema, depth: usize) {
        if depth > 64 {
            return;
        }
        match s {
            Schema::Record(r) => {
                self.0.insert(r.name.fullname(None), s);
                for f in &r.fields {
                    self.collect(&f.schema, depth + 1);
                }
            }
            Schema::Enum(e) => {
                self.0.insert(e.name.fullname(None), s);
            }
            Schema::Fixed(f) => {
                self.0.insert(f.name.fullname(None), s);
            }
            Schema::Array(a) => self.collect(&a.items, depth + 1),
            Schema::Map(m) => self.collect(&m.types, depth + 1),
            Schema::Union(u) => {
                for v in u.variants() {
                    self.collect(v, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn resolve(&self, s: &'s Schema) -> Result<&'s Schema, String> {
        match s {
            Schema::Ref { name } => {
                self.0.get(&name.fullname(None)).copied().ok_or_else(|| format!("unknown type {}", name.fullname(None)))
            }
            other => Ok(other),
        }
    }

    fn skip(&self, s: &'s Schema, depth: usize) -> Result<Skip, String> {
        if depth > 32 {
            return Err("the writer schema nests deeper than 32 levels".into());
        }
        Ok(match self.resolve(s)? {
            Schema::Null => Skip::Zero,
            Schema::Boolean => Skip::Fixed(1),
            Schema::Float => Skip::Fixed(4),
            Schema::Double => Skip::Fixed(8),
            Schema::Int
            | Schema::Long
            | Schema::Enum(_)
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Skip::Varint,
            Schema::Bytes | Schema::String | Schema::BigDecimal => Skip::Bytes,
            Schema::Uuid(UuidSchema::Bytes | UuidSchema::String) => Skip::Bytes,
            Schema::Uuid(UuidSchema::Fixed(f)) => Skip::Fixed(f.size),
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => Skip::Bytes,
                InnerDecimalSchema::Fixed(f) => Skip::Fixed(f.size),
            },
            Schema::Fixed(f) | Schema::Duration(f) => Skip::Fixed(f.size),
            Schema::Array(a) => Skip::Array(Box::new(self.skip(&a.items, depth + 1)?)),
            Schema::Map(m) => Skip::Map(Box::new(self.skip(&m.types, depth + 1)?)),
            Schema::Union(u) => {
                Skip::Union(u.variants().iter().map(|v| self.skip(v, depth + 1)).collect::<Result<_, _>>()?)
            }
            Schema::Record(r) => {
                Skip::Record(r.fields.iter().map(|f| self.skip(&f.schema, depth + 1)).collect::<Result<_, _>>()?)
            }
            Schema::Ref { name } => return Err(format!("unresolved type {}", name.fullname(None))),
        })
    }

    fn take(&self, w: &'s Schema, rf: &ReaderField, depth: usize) -> Result<Take, String> {
        let w = self.resolve(w)?;
        let kind = kind_name(&rf.kind);
        Ok(match (w, &rf.kind) {
            (Schema::Null, _) if rf.nullable => Take::Null,
            (Schema::Null, _) => return Err(format!("null cannot be read as the required {kind}")),
            (Schema::Union(u), _) => {
                if depth > 0 {
                    return Err("a union inside a union".into());
                }
                let branches: Vec<Result<Take, String>> =
                    u.variants().iter().map(|v| self.take(v, rf, depth + 1)).collect();
                if branches.iter().all(Result::is_err) {
                    return Err(format!("no branch of the writer's union can be read as {kind}"));
                }
                Take::Union(branches)
            }
            (Schema::String | Schema::Bytes | Schema::Uuid(UuidSchema::String), Kind::Str | Kind::Enum(_)) => Take::Str,
            (Schema::Int | Schema::Long | Schema::TimestampMillis | Schema::LocalTimestampMillis, Kind::Long) => {
                Take::Long(1)
            }
            (Schema::TimestampMicros | Schema::LocalTimestampMicros, Kind::Long) => Take::Long(1_000),
            (Schema::TimestampNanos | Schema::LocalTimestampNanos, Kind::Long) => Take::Long(1_000_000),
            (Schema::Int, Kind::Int) => Take::Long(1),
            (Schema::Enum(e), Kind::Enum(_)) => Take::Enum(e.symbols.clone()),
            (Schema::Map(m), Kind::StrMap) if matches!(self.resolve(&m.types)?, Schema::String) => {
                Take::Ignore(self.skip(w, 0)?)
            }
            (other, _) => return Err(format!("the writer's {} cannot be read as {kind}", type_name(other))),
        })
    }
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Str => "string",
        Kind::Long => "long",
        Kind::Int => "int",
        Kind::Enum(_) => "enum",
        Kind::StrMap => "map of strings",
    }
}

fn type_name(s: &Schema) -> String {
    match s {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("fixed {}", f.name.fullname(None)),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        other => {
            let canonical = other.canonical_form();
            canonical.trim_matches('"').to_string()
        }
    }
}

impl Plan {
    /// A plan that reads nothing (stands in for a reader schema that failed to build,
    /// which the tests rule out).
    pub(crate) fn empty() -> Self {
        Self { steps: Vec::new(), names: Vec::new() }
    }

    /// Resolves `writer` against `reader`. The error says why they are incompatible.
    pub(crate) fn compile(writer: &Schema, reader: &ReaderSpec) -> Result<Self, String> {
        let names = Names::of(writer);
        let Schema::Record(w) = names.resolve(writer)? else {
            return Err(format!("the writer schema is a {}, not a record", type_name(writer)));
        };
        let mut steps = Vec::with_capacity(w.fields.len());
        for wf in &w.fields {
            match reader.fields.iter().position(|rf| rf.name == wf.name) {
                Some(slot) => {
                    let take = names
                        .take(&wf.schema, &reader.fields[slot], 0)
                        .map_err(|e| format!("field `{}`: {e}", wf.name))?;
                    steps.push(Step::Take { slot, take });
                }
                None => steps.push(Step::Skip(names.skip(&wf.schema, 0)?)),
            }
        }
        for rf in &reader.fields {
            if !rf.has_default && !w.fields.iter().any(|wf| wf.name == rf.name) {
                return Err(format!("the writer schema has no field `{}`, which {} needs", rf.name, reader.name));
            }
        }
        Ok(Self { steps, names: reader.fields.iter().map(|f| f.name.clone()).collect() })
    }

    /// Decodes one record that fills `body` exactly.
    pub(crate) fn decode<'a>(&'a self, body: &'a [u8]) -> Result<Decoded<'a>, Rejection> {
        let mut cur = Cursor { buf: body, pos: 0 };
        let rec = self.decode_next(&mut cur)?;
        if cur.pos != body.len() {
            return Err(Rejection::new(
                Reason::Undecodable,
                format!(
                    "{} bytes left after the Avro record: the data does not match its writer schema",
                    body.len() - cur.pos
                ),
            ));
        }
        Ok(rec)
    }

    /// Decodes the next record at the cursor.
    pub(crate) fn decode_next<'a>(&'a self, cur: &mut Cursor<'a>) -> Result<Decoded<'a>, Rejection> {
        let mut slots = [Field::Absent; MAX_FIELDS];
        for step in &self.steps {
            match step {
                Step::Skip(s) => cur.skip(s)?,
                Step::Take { slot, take } => {
                    let v = cur.take(take).map_err(|e| match e {
                        Fail::Data(detail) => Rejection::new(Reason::Undecodable, detail),
                        Fail::Branch(why) => {
                            Rejection::new(Reason::IncompatibleSchema, format!("field `{}`: {why}", self.names[*slot]))
                        }
                    })?;
                    slots[*slot] = v;
                }
            }
        }
        Ok(Decoded { slots, names: &self.names })
    }
}

/// A decoded record: its fields by the reader schema's names.
#[derive(Debug)]
pub struct Decoded<'a> {
    slots: [Field<'a>; MAX_FIELDS],
    names: &'a [String],
}

impl Record for Decoded<'_> {
    fn field(&self, name: &str) -> Field<'_> {
        self.names.iter().position(|n| n == name).map_or(Field::Absent, |i| self.slots[i])
    }
}

enum Fail {
    /// The bytes are not valid Avro for the schema.
    Data(String),
    /// A union branch the reader cannot take.
    Branch(String),
}

fn short() -> Fail {
    Fail::Data("the Avro data ends early".into())
}

/// A position in Avro binary data.
pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Result<i64, Fail> {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.buf.get(self.pos).ok_or_else(short)?;
            self.pos += 1;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(Fail::Data("an Avro number runs over 10 bytes".into()));
            }
        }
        Ok(zigzag(n))
    }

    fn run(&mut self) -> Result<&'a [u8], Fail> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| Fail::Data(format!("negative Avro length {len}")))?;
        let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len()).ok_or_else(short)?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn advance(&mut self, n: usize) -> Result<(), Fail> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(short)?;
        self.pos = end;
        Ok(())
    }

    fn skip(&mut self, s: &Skip) -> Result<(), Rejection> {
        self.skip_inner(s).map_err(|e| match e {
            Fail::Data(d) | Fail::Branch(d) => Rejection::new(Reason::Undecodable, d),
        })
    }

    fn skip_inner(&mut self, s: &Skip) -> Result<(), Fail> {
        match s {
            Skip::Zero => Ok(()),
            Skip::Varint => self.varint().map(drop),
            Skip::Fixed(n) => self.advance(*n),
            Skip::Bytes => self.run().map(drop),
            Skip::Array(item) => self.blocks(|c| c.skip_inner(item)),
            Skip::Map(value) => self.blocks(|c| {
                c.run()?;
                c.skip_inner(value)
            }),
            Skip::Union(branches) => {
                let i = self.varint()?;
                let b = usize::try_from(i).ok().and_then(|i| branches.get(i)).ok_or_else(|| bad_branch(i))?;
                self.skip_inner(b)
            }
            Skip::Record(fields) => fields.iter().try_for_each(|f| self.skip_inner(f)),
        }
    }

    /// Array and map blocks: a count (negative: followed by a byte size), items, until 0.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> Result<(), Fail>) -> Result<(), Fail> {
        loop {
            let mut count = self.varint()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or_else(|| Fail::Data("bad Avro block count".into()))?;
                self.varint()?;
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn take(&mut self, t: &'a Take) -> Result<Field<'a>, Fail> {
        Ok(match t {
            Take::Null => Field::Absent,
            Take::Str => {
                let b = self.run()?;
                Field::Str(std::str::from_utf8(b).map_err(|_| Fail::Data("an Avro string is not UTF-8".into()))?)
            }
            Take::Long(div) => Field::Int(self.varint()? / div),
            Take::Enum(symbols) => {
                let i = self.varint()?;
                let s = usize::try_from(i)
                    .ok()
                    .and_then(|i| symbols.get(i))
                    .ok_or_else(|| Fail::Data(format!("enum index {i} is out of range")))?;
                Field::Str(s)
            }
            Take::Ignore(s) => {
                self.skip_inner(s)?;
                Field::Other("a map")
            }
            Take::Union(branches) => {
                let i = self.varint()?;
                match usize::try_from(i).ok().and_then(|i| branches.get(i)).ok_or_else(|| bad_branch(i))? {
                    Ok(t) => self.take(t)?,
                    Err(why) => return Err(Fail::Branch(why.clone())),
                }
            }
        })
    }
}

/// An Avro long from its zigzag-encoded varint value.
pub(crate) fn zigzag(n: u64) -> i64 {
    (n >> 1) as i64 ^ -((n & 1) as i64)
}

fn bad_branch(i: i64) -> Fail {
    Fail::Data(format!("union branch {i} is out of range"))
}
