//! Field definitions and field types.

use serde::{Deserialize, Serialize};

use crate::{FieldName, MetadataError, ObjectName, Sensitivity, Value, camel_case};

/// The type of a field, as named in the API (`TEXT`, `PICKLIST`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FieldType {
    Text,
    LongText,
    Integer,
    Decimal,
    Currency,
    Percent,
    Boolean,
    Date,
    Datetime,
    Email,
    Phone,
    Url,
    Picklist,
    MultiPicklist,
    Lookup,
    AutoNumber,
    Json,
}

impl FieldType {
    pub const ALL: [FieldType; 17] = [
        FieldType::Text,
        FieldType::LongText,
        FieldType::Integer,
        FieldType::Decimal,
        FieldType::Currency,
        FieldType::Percent,
        FieldType::Boolean,
        FieldType::Date,
        FieldType::Datetime,
        FieldType::Email,
        FieldType::Phone,
        FieldType::Url,
        FieldType::Picklist,
        FieldType::MultiPicklist,
        FieldType::Lookup,
        FieldType::AutoNumber,
        FieldType::Json,
    ];

    /// The API spelling (`LONG_TEXT`).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "TEXT",
            FieldType::LongText => "LONG_TEXT",
            FieldType::Integer => "INTEGER",
            FieldType::Decimal => "DECIMAL",
            FieldType::Currency => "CURRENCY",
            FieldType::Percent => "PERCENT",
            FieldType::Boolean => "BOOLEAN",
            FieldType::Date => "DATE",
            FieldType::Datetime => "DATETIME",
            FieldType::Email => "EMAIL",
            FieldType::Phone => "PHONE",
            FieldType::Url => "URL",
            FieldType::Picklist => "PICKLIST",
            FieldType::MultiPicklist => "MULTI_PICKLIST",
            FieldType::Lookup => "LOOKUP",
            FieldType::AutoNumber => "AUTO_NUMBER",
            FieldType::Json => "JSON",
        }
    }

    pub fn parse(s: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Stored as text (and so accepts `maxLength`, `like`, ...).
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            FieldType::Text
                | FieldType::LongText
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Url
                | FieldType::AutoNumber
        )
    }

    /// Exact decimal types, stored as scaled integers.
    pub fn is_decimal(self) -> bool {
        matches!(self, FieldType::Decimal | FieldType::Currency | FieldType::Percent)
    }

    pub fn is_numeric(self) -> bool {
        self == FieldType::Integer || self.is_decimal()
    }

    /// Values of this type have a meaningful order (range filters, min/max, sorting).
    pub fn is_ordered(self) -> bool {
        !matches!(self, FieldType::MultiPicklist | FieldType::Json | FieldType::Boolean)
    }

    /// Can be a sort key.
    pub fn is_sortable(self) -> bool {
        self.is_ordered() || self == FieldType::Boolean
    }

    /// Can be listed in `groupBy`.
    pub fn is_groupable(self) -> bool {
        !matches!(self, FieldType::LongText | FieldType::Json | FieldType::MultiPicklist)
    }

    /// Can carry a unique or ordinary index.
    pub fn is_indexable(self) -> bool {
        !matches!(self, FieldType::LongText | FieldType::Json | FieldType::MultiPicklist)
    }

    fn default_max_length(self) -> Option<u32> {
        match self {
            FieldType::Text | FieldType::Url => Some(255),
            FieldType::Email => Some(254),
            FieldType::Phone => Some(40),
            FieldType::LongText => Some(131_072),
            _ => None,
        }
    }
}

/// What the column of a searchable encrypted field's blind index appends to its name
/// (`phone__bidx`); `__` never appears in an api name, so it cannot clash with a field.
pub const BLIND_INDEX_SUFFIX: &str = "__bidx";

/// One choice of a `PICKLIST` / `MULTI_PICKLIST`. Retired options stay defined so that stored
/// values keep their label, but new writes may not pick them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PicklistOption {
    pub value: String,
    pub label: String,
    #[serde(default = "default_true")]
    pub active: bool,
}

fn default_true() -> bool {
    true
}

/// A field of an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDefinition {
    pub name: FieldName,
    pub label: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub indexed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help_text: Option<String>,
    /// Digits after the decimal point of `DECIMAL`, `CURRENCY`, `PERCENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<PicklistOption>,
    /// Target object of a `LOOKUP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ObjectName>,
    /// Pattern of an `AUTO_NUMBER`, e.g. `C-{000000}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Personal data: encrypted at rest, searchable through a blind index, masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<Sensitivity>,
    /// A `FORMULA` field: the Rhai expression over `record` whose result is stored. The field's
    /// `type` is then the formula's result type (what the API calls `resultType`), so it is
    /// stored, filtered, sorted and indexed like any field of that type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
}

/// Types a formula may compute.
pub const FORMULA_RESULT_TYPES: [FieldType; 9] = [
    FieldType::Text,
    FieldType::LongText,
    FieldType::Integer,
    FieldType::Decimal,
    FieldType::Currency,
    FieldType::Percent,
    FieldType::Boolean,
    FieldType::Date,
    FieldType::Datetime,
];

/// Largest formula expression, in bytes.
pub const MAX_FORMULA_BYTES: usize = 16 * 1024;

/// Largest `scale` of a decimal field: values are kept as scaled 64-bit integers.
pub const MAX_SCALE: u8 = 8;

impl FieldDefinition {
    /// A field with the given name, label and type and every option at its default.
    pub fn new(name: FieldName, label: impl Into<String>, field_type: FieldType) -> Self {
        FieldDefinition {
            name,
            label: label.into(),
            field_type,
            required: false,
            unique: false,
            indexed: false,
            default_value: None,
            max_length: None,
            help_text: None,
            scale: None,
            options: Vec::new(),
            target: None,
            format: None,
            sensitive: None,
            formula: None,
        }
    }

    /// Whether the value is computed by a formula (and so never written by a caller).
    pub fn is_formula(&self) -> bool {
        self.formula.is_some()
    }

    /// The type as the metadata API names it: `FORMULA` for formulas, else the field type.
    pub fn api_type(&self) -> &'static str {
        if self.is_formula() { "FORMULA" } else { self.field_type.as_str() }
    }

    /// Whether values are stored as ciphertext.
    pub fn is_encrypted(&self) -> bool {
        self.sensitive.is_some_and(|s| s.encrypted)
    }

    /// Whether an encrypted field has a blind index.
    pub fn is_searchable(&self) -> bool {
        self.sensitive.is_some_and(|s| s.encrypted && s.searchable)
    }

    /// The column of the blind index of a searchable encrypted field (`__` never appears in
    /// an api name, so it cannot clash with a field's column).
    pub fn blind_index_column(&self) -> String {
        format!("{}{BLIND_INDEX_SUFFIX}", self.name)
    }

    /// The SQL column: the api name, or `<name>_id` for a lookup.
    pub fn column(&self) -> String {
        self.column_name().into_owned()
    }

    /// `column` without a copy of the name where it is the column (every type but a lookup),
    /// for the loops that look a value up by column once per field of every record of a batch.
    pub fn column_name(&self) -> std::borrow::Cow<'_, str> {
        if self.field_type == FieldType::Lookup {
            std::borrow::Cow::Owned(format!("{}_id", self.name))
        } else {
            std::borrow::Cow::Borrowed(self.name.as_str())
        }
    }

    /// The GraphQL field name (`closeDate`).
    pub fn graphql_name(&self) -> String {
        camel_case(self.name.as_str())
    }

    /// For lookups, the GraphQL name of the id field (`accountId`).
    pub fn graphql_id_name(&self) -> String {
        camel_case(&format!("{}_id", self.name))
    }

    pub fn effective_scale(&self) -> u8 {
        self.scale.unwrap_or(2)
    }

    pub fn effective_max_length(&self) -> Option<u32> {
        self.max_length.or(self.field_type.default_max_length())
    }

    pub fn option(&self, value: &str) -> Option<&PicklistOption> {
        self.options.iter().find(|o| o.value == value)
    }

    /// The value written when an input omits the field.
    pub fn default(&self) -> Result<Option<Value>, crate::FieldIssue> {
        match &self.default_value {
            None => Ok(None),
            Some(json) => Value::coerce(self, json).map(Some),
        }
    }

    /// Checks the definition on its own (options, scale, format, default). Clashes with other
    /// fields and the existence of a lookup target are checked by the registry.
    pub fn validate(&self) -> Result<(), MetadataError> {
        let invalid = |msg: String| Err(MetadataError::Invalid(format!("field `{}`: {msg}", self.name)));
        if self.label.trim().is_empty() {
            return invalid("label must not be empty".into());
        }
        if self.label.chars().count() > 120 {
            return invalid("label must be at most 120 characters".into());
        }
        let t = self.field_type;
        if self.max_length.is_some() && !t.is_textual() {
            return invalid(format!("maxLength applies only to text fields, not {}", t.as_str()));
        }
        if let Some(max) = self.max_length
            && !(1..=1_000_000).contains(&max)
        {
            return invalid("maxLength must be between 1 and 1000000".into());
        }
        if self.scale.is_some() && !t.is_decimal() {
            return invalid(format!("scale applies only to decimal fields, not {}", t.as_str()));
        }
        if self.effective_scale() > MAX_SCALE {
            return invalid(format!("scale must be at most {MAX_SCALE}"));
        }
        let is_picklist = matches!(t, FieldType::Picklist | FieldType::MultiPicklist);
        if is_picklist {
            if self.options.is_empty() {
                return invalid("a picklist needs at least one option".into());
            }
            let mut seen = std::collections::HashSet::new();
            for o in &self.options {
                FieldName::new(&o.value)
                    .map_err(|e| MetadataError::Invalid(format!("field `{}`: option {e}", self.name)))?;
                if !seen.insert(o.value.as_str()) {
                    return invalid(format!("option `{}` is listed twice", o.value));
                }
                if o.label.trim().is_empty() {
                    return invalid(format!("option `{}` needs a label", o.value));
                }
            }
        } else if !self.options.is_empty() {
            return invalid(format!("options apply only to picklists, not {}", t.as_str()));
        }
        match (t, &self.target) {
            (FieldType::Lookup, None) => return invalid("a lookup needs a `target` object".into()),
            (FieldType::Lookup, Some(_)) => {}
            (_, Some(_)) => return invalid("target applies only to lookups".into()),
            _ => {}
        }
        match (t, &self.format) {
            (FieldType::AutoNumber, Some(f)) => {
                auto_number_width(f).ok_or_else(|| {
                    MetadataError::Invalid(format!(
                        "field `{}`: format `{f}` needs one `{{0…}}` placeholder, e.g. `C-{{000000}}`",
                        self.name
                    ))
                })?;
            }
            (FieldType::AutoNumber, None) => {}
            (_, Some(_)) => return invalid("format applies only to AUTO_NUMBER".into()),
            _ => {}
        }
        if t == FieldType::AutoNumber && (self.default_value.is_some() || self.required) {
            return invalid("an AUTO_NUMBER is assigned by the platform: no default or required".into());
        }
        if (self.unique || self.indexed) && !t.is_indexable() {
            return invalid(format!("{} fields cannot be unique or indexed", t.as_str()));
        }
        if let Some(expression) = &self.formula {
            if !FORMULA_RESULT_TYPES.contains(&t) {
                return invalid(format!(
                    "a formula cannot compute a {}: its resultType must be one of {}",
                    t.as_str(),
                    FORMULA_RESULT_TYPES.map(FieldType::as_str).join(", ")
                ));
            }
            if expression.trim().is_empty() {
                return invalid("a formula needs an expression".into());
            }
            if expression.len() > MAX_FORMULA_BYTES {
                return invalid(format!("a formula expression must be at most {MAX_FORMULA_BYTES} bytes"));
            }
            if self.required || self.unique || self.default_value.is_some() || self.sensitive.is_some() {
                return invalid(
                    "a formula's value is computed: it cannot be required, unique, sensitive or have a default".into(),
                );
            }
        }
        if let Some(sensitive) = &self.sensitive {
            if !Sensitivity::applies_to(t) {
                return invalid(format!(
                    "{} fields cannot be sensitive: only TEXT, LONG_TEXT, EMAIL, PHONE and URL can",
                    t.as_str()
                ));
            }
            if sensitive.searchable && !sensitive.encrypted {
                return invalid("searchable applies to encrypted fields (it adds a blind index)".into());
            }
            if sensitive.encrypted && self.indexed {
                return invalid(
                    "an encrypted field cannot have an ordinary index; make it searchable for equality search".into(),
                );
            }
            if sensitive.encrypted && self.default_value.is_some() {
                return invalid("an encrypted field cannot have a default value".into());
            }
            if sensitive.encrypted && self.unique && !sensitive.searchable {
                return invalid("a unique encrypted field must be searchable: uniqueness uses its blind index".into());
            }
        }
        if self.default_value.is_some() {
            if t == FieldType::Lookup {
                return invalid("a lookup cannot have a default value".into());
            }
            if self.unique {
                return invalid("a unique field cannot have a default value".into());
            }
            self.default().map_err(|issue| {
                MetadataError::Invalid(format!("field `{}`: defaultValue {}", self.name, issue.message))
            })?;
        }
        Ok(())
    }

    /// Formats an `AUTO_NUMBER` value from its sequence number.
    pub fn format_auto_number(&self, n: i64) -> String {
        let format = self.format.as_deref().unwrap_or("{0}");
        match auto_number_width(format) {
            Some((start, end, width)) => {
                format!("{}{:0width$}{}", &format[..start], n, &format[end..], width = width)
            }
            None => n.to_string(),
        }
    }
}

/// Finds the `{000}` placeholder: (start, end, width).
fn auto_number_width(format: &str) -> Option<(usize, usize, usize)> {
    let start = format.find('{')?;
    let end = start + format[start..].find('}')? + 1;
    let inner = &format[start + 1..end - 1];
    if inner.is_empty() || !inner.chars().all(|c| c == '0') || format[end..].contains('{') {
        return None;
    }
    Some((start, end, inner.len()))
}

/// How existing data follows a change of a field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeChange {
    /// Same storage and every stored value stays valid: only the definition changes.
    Relabel,
    /// Each stored value is converted (and checked) with `Value::convert`.
    Convert,
}

impl TypeChange {
    /// Whether a field may change from `from` to `to`, and how; `Err` says why not.
    pub fn plan(from: &FieldDefinition, to: &FieldDefinition) -> Result<TypeChange, MetadataError> {
        let plan = TypeChange::plan_values(from, to)?;
        if plan == TypeChange::Convert && (from.is_encrypted() || to.is_encrypted()) {
            return Err(MetadataError::Invalid(format!(
                "cannot change field `{}` from {} to {}: its values are encrypted and would have to be \
                 converted; turn encryption off first",
                from.name,
                from.field_type.as_str(),
                to.field_type.as_str()
            )));
        }
        Ok(plan)
    }

    fn plan_values(from: &FieldDefinition, to: &FieldDefinition) -> Result<TypeChange, MetadataError> {
        use FieldType::*;
        let (a, b) = (from.field_type, to.field_type);
        let refuse = |why: &str| {
            Err(MetadataError::Invalid(format!(
                "cannot change field `{}` from {} to {}: {why}",
                from.name,
                a.as_str(),
                b.as_str()
            )))
        };
        if a == b {
            if a.is_decimal() && from.effective_scale() != to.effective_scale() {
                return Ok(TypeChange::Convert);
            }
            if a == Lookup && from.target != to.target {
                return refuse("a lookup cannot be pointed at another object; create a new field");
            }
            if a.is_textual() && to.effective_max_length() < from.effective_max_length() {
                return Ok(TypeChange::Convert);
            }
            return Ok(TypeChange::Relabel);
        }
        if matches!(a, Lookup | AutoNumber) || matches!(b, Lookup | AutoNumber) {
            return refuse("lookups and auto numbers keep their type; create a new field");
        }
        if a.is_decimal() && b.is_decimal() && from.effective_scale() == to.effective_scale() {
            return Ok(TypeChange::Relabel);
        }
        if a.is_textual() && b == LongText {
            return Ok(TypeChange::Relabel);
        }
        let convertible = match (a, b) {
            (x, y) if x.is_textual() && y.is_textual() => true,
            (x, Text | LongText) if x != Json => true,
            (Integer, y) if y.is_decimal() => true,
            (x, Integer) if x.is_decimal() => true,
            (x, y) if x.is_decimal() && y.is_decimal() => true,
            (Text | LongText, Integer | Boolean | Date | Datetime | Picklist) => true,
            (Text | LongText, y) if y.is_decimal() => true,
            (Date, Datetime) | (Datetime, Date) => true,
            (Picklist, MultiPicklist) | (MultiPicklist, Picklist) => true,
            _ => false,
        };
        if convertible { Ok(TypeChange::Convert) } else { refuse("the stored values have no safe conversion") }
    }
}
