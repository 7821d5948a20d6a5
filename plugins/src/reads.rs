//! Which fields of `record` a compiled source reads, found by walking its syntax tree: a
//! formula's value is stored and shown unprotected, so a formula must not read a sensitive
//! field, and this is how the metadata service and the save pipeline tell.

use std::collections::BTreeSet;

use rhai::{ASTNode, Expr};
use tessera_metadata::ObjectDefinition;

use crate::engine::Compiled;

/// The variable through which scripts and formulas see the record.
const RECORD: &str = "record";

/// The fields of `record` a source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordReads {
    /// Only these fields, each named literally: `record.x`, `record?.x`, `record["x"]`.
    Fields(BTreeSet<String>),
    /// Any field: `record` is used some other way (indexed by a computed key, passed to a
    /// function, iterated, copied, captured), so no field can be ruled out.
    Whole,
}

impl RecordReads {
    pub fn includes(&self, field: &str) -> bool {
        match self {
            RecordReads::Fields(fields) => fields.contains(field),
            RecordReads::Whole => true,
        }
    }
}

/// A formula of an object that reads sensitive fields of that object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveFormula {
    /// The formula field's api name.
    pub formula: String,
    /// The sensitive fields it reads, in definition order.
    pub reads: Vec<String>,
    /// Whether it reads `record` as a whole rather than by field name.
    pub whole_record: bool,
}

impl SensitiveFormula {
    /// What the formula reads, for messages: "`phone`, `email`" or "the whole record (…)".
    pub fn describe_reads(&self) -> String {
        if self.whole_record {
            return format!(
                "the whole record (`record` used other than as `record.<field>` or `record[\"<field>\"]`), \
                 sensitive fields {} included",
                quoted(&self.reads)
            );
        }
        quoted(&self.reads)
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

impl Compiled {
    /// The fields of `record` this source reads.
    pub fn record_reads(&self) -> RecordReads {
        let mut fields = BTreeSet::new();
        let mut whole = false;
        self.ast.walk(&mut |path: &[ASTNode]| {
            if let Some(ASTNode::Expr(var @ Expr::Variable(x, ..))) = path.last()
                && x.1.as_str() == RECORD
            {
                let parent = path.len().checked_sub(2).and_then(|i| path.get(i));
                match parent.and_then(|p| field_read_through(p, var)) {
                    Some(field) => {
                        fields.insert(field);
                    }
                    None => whole = true,
                }
            }
            // Once the whole record is read, nothing more can be learned.
            !whole
        });
        if whole { RecordReads::Whole } else { RecordReads::Fields(fields) }
    }

    /// The sensitive fields of `object` that this source, as the formula `formula`, reads;
    /// `None` when it reads none.
    pub fn sensitive_reads(&self, object: &ObjectDefinition, formula: &str) -> Option<SensitiveFormula> {
        let reads = self.record_reads();
        let sensitive: Vec<String> = object
            .fields
            .iter()
            .filter(|f| f.sensitive.is_some() && reads.includes(f.name.as_str()))
            .map(|f| f.name.to_string())
            .collect();
        (!sensitive.is_empty()).then(|| SensitiveFormula {
            formula: formula.to_string(),
            reads: sensitive,
            whole_record: reads == RecordReads::Whole,
        })
    }
}

/// The field that `parent` reads from the `record` variable `var` when `var` is the start of
/// a property or index chain with a literal first key (`record.x…`, `record["x"]…`).
fn field_read_through(parent: &ASTNode, var: &Expr) -> Option<String> {
    let ASTNode::Expr(parent) = parent else { return None };
    let (chain, literal_index) = match parent {
        Expr::Dot(chain, ..) => (chain, false),
        Expr::Index(chain, ..) => (chain, true),
        _ => return None,
    };
    if !std::ptr::eq(&chain.lhs, var) {
        return None;
    }
    // The rest of a chain nests to the right: `record.a.b` is `record . (a . b)`.
    let first = match &chain.rhs {
        Expr::Dot(rest, ..) | Expr::Index(rest, ..) => &rest.lhs,
        key => key,
    };
    match (first, literal_index) {
        (Expr::Property(p, ..), false) => Some(p.2.to_string()),
        (Expr::StringConstant(s, ..), true) => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, ScriptHost};

    fn reads(source: &str) -> RecordReads {
        ScriptHost::new(Limits::default()).compile(source).unwrap().record_reads()
    }

    fn fields(names: &[&str]) -> RecordReads {
        RecordReads::Fields(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn names_the_fields_read_by_name() {
        assert_eq!(reads("record.price * record.qty"), fields(&["price", "qty"]));
        assert_eq!(reads("record[\"price\"] + record?.tax"), fields(&["price", "tax"]));
        assert_eq!(reads("record.name.len() + record[\"city\"].len()"), fields(&["city", "name"]));
        assert_eq!(reads("record.tags[0]"), fields(&["tags"]));
        assert_eq!(reads("if record.amount > 1 { `${record.name}` } else { \"\" }"), fields(&["amount", "name"]));
        assert_eq!(reads("let x = 1; x + 2"), fields(&[]));
        // Neither a comment nor a string is a read.
        assert_eq!(reads("// record.phone\n\"record.phone\".len()"), fields(&[]));
    }

    #[test]
    fn any_other_use_of_record_reads_the_whole_record() {
        for source in [
            "let k = \"ph\" + \"one\"; record[k]",
            "record.keys().len()",
            "let r = record; r.phone",
            "record.values()",
            "\"phone\" in record",
            "`${record}`",
            "fn f(r) { r.phone } f(record)",
            "let g = || record.phone; g.call()",
            "for v in record.values() { } 1",
            "record.phone.len() + record.len()",
        ] {
            assert_eq!(reads(source), RecordReads::Whole, "{source}");
        }
    }
}
