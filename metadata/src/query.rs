//! The model of a record query: filters and sort keys, independent of GraphQL and SQL.

use crate::Value;

/// A comparison applied to one column.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterOp {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    Like(String),
    ILike(String),
    StartsWith(String),
    EndsWith(String),
    IsNull(bool),
}

/// A boolean condition over records of one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `column op value`; `column` is a physical column (system or field column).
    Column {
        column: String,
        op: FilterOp,
    },
    /// A condition on the record a lookup points to.
    Related {
        column: String,
        target: crate::ObjectName,
        filter: Box<Filter>,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// Records owned by `user`, or with `team` by `user` or anyone reporting to them: the row
    /// scope of a permission, composed with the caller's own filter. `broad` says the team owns
    /// a large share of all records, so reading them by owner would cost more than a scan.
    OwnedBy {
        user: String,
        team: bool,
        broad: bool,
    },
    /// Equality on an encrypted field through its blind index: the record's value is one of
    /// `values`. The query layer gives plaintexts; the store replaces them by their blind
    /// indexes (and, while the field's stored values are still being encrypted, also compares
    /// the plaintext column) before compiling the condition.
    Blind {
        /// The encrypted field: its object and api name, type (which decides normalisation)
        /// and the column of its ciphertext.
        object: String,
        field: String,
        field_type: crate::FieldType,
        column: String,
        /// The blind index column.
        index_column: String,
        /// The plaintexts searched for.
        values: Vec<String>,
        /// Their blind indexes, filled in by the store (which holds the key).
        hashes: Option<Vec<i64>>,
        /// Plaintexts compared with the ciphertext column too (only while converting).
        plain: Vec<String>,
    },
    /// An equality with a value on a field the caller sees masked (`filter`, the condition
    /// itself, on `object`'s records): a guess at a hidden value, which the answer confirms or
    /// denies. The store counts, rate-limits and logs each such probe, then compiles `filter`
    /// as it is.
    Probe {
        object: crate::ObjectName,
        field: crate::FieldName,
        filter: Box<Filter>,
    },
}

impl Filter {
    /// Both conditions (either may be absent).
    pub fn and_maybe(a: Option<Filter>, b: Option<Filter>) -> Option<Filter> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Filter::And(vec![a, b])),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDirection {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullsOrder {
    First,
    Last,
}

/// One key of a multi-key sort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    pub column: String,
    pub direction: SortDirection,
    pub nulls: NullsOrder,
}

impl OrderKey {
    /// The same key walked the other way (for `last`/`before` pages).
    pub fn reversed(&self) -> OrderKey {
        OrderKey {
            column: self.column.clone(),
            direction: match self.direction {
                SortDirection::Asc => SortDirection::Desc,
                SortDirection::Desc => SortDirection::Asc,
            },
            nulls: match self.nulls {
                NullsOrder::First => NullsOrder::Last,
                NullsOrder::Last => NullsOrder::First,
            },
        }
    }
}
