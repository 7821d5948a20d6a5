//! A test object with a field of every type, rows, and a fake host API.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use tessera_metadata::{
    FieldDefinition, FieldName, FieldType, ObjectDefinition, ObjectName, PicklistOption, ScriptDefinition, ScriptHook,
    Value,
};
use tessera_plugins::{
    BudgetLimits, Chain, Compiled, Host, HostError, HostRecord, Limits, Row, RunInput, RunOutcome, SaveInput,
    SaveOutcome, ScriptHost, ScriptUser,
};

pub fn field(name: &str, t: FieldType) -> FieldDefinition {
    let mut f = FieldDefinition::new(FieldName::new(name).unwrap(), name, t);
    match t {
        FieldType::Picklist => {
            f.options = ["new", "won", "lost"]
                .iter()
                .map(|v| PicklistOption { value: v.to_string(), label: v.to_string(), active: true })
                .collect();
        }
        FieldType::MultiPicklist => {
            f.options = ["red", "green", "blue"]
                .iter()
                .map(|v| PicklistOption { value: v.to_string(), label: v.to_string(), active: true })
                .collect();
        }
        FieldType::Lookup => f.target = Some(ObjectName::new("account").unwrap()),
        _ => {}
    }
    f
}

pub fn formula(name: &str, t: FieldType, expression: &str) -> FieldDefinition {
    let mut f = field(name, t);
    f.formula = Some(expression.to_string());
    f
}

/// `deal`: one field of every type, and the formula `total = amount * quantity`.
pub fn deal() -> ObjectDefinition {
    let mut discount = field("discount", FieldType::Decimal);
    discount.scale = Some(4);
    ObjectDefinition {
        name: ObjectName::new("deal").unwrap(),
        plural_name: ObjectName::new("deals").unwrap(),
        label: "Deal".into(),
        plural_label: "Deals".into(),
        description: None,
        fields: vec![
            field("name", FieldType::Text),
            field("notes", FieldType::LongText),
            field("amount", FieldType::Currency),
            field("quantity", FieldType::Integer),
            discount,
            field("rate", FieldType::Percent),
            field("won", FieldType::Boolean),
            field("close_date", FieldType::Date),
            field("closed_at", FieldType::Datetime),
            field("email", FieldType::Email),
            field("phone", FieldType::Phone),
            field("site", FieldType::Url),
            field("stage", FieldType::Picklist),
            field("colors", FieldType::MultiPicklist),
            field("account", FieldType::Lookup),
            field("code", FieldType::AutoNumber),
            field("meta", FieldType::Json),
            formula("total", FieldType::Currency, "record.amount * record.quantity"),
        ],
        scripts: vec![],
        indexes: vec![],
    }
}

pub fn script(name: &str, hook: ScriptHook, order: i32, source: &str) -> ScriptDefinition {
    ScriptDefinition {
        name: FieldName::new(name).unwrap(),
        hook,
        order,
        active: true,
        source: source.to_string(),
        roles: vec![],
        description: None,
    }
}

/// A deal row: amount 1234.50, quantity 2, stage won, ...
pub fn row() -> Row {
    let mut r = Row::default();
    r.insert("id".to_string(), Value::Text("d1".into()));
    r.insert("owner_id".to_string(), Value::Text("u1".into()));
    r.insert("name".to_string(), Value::Text("Big deal".into()));
    r.insert("notes".to_string(), Value::Null);
    r.insert("amount".to_string(), Value::Int(123_450));
    r.insert("quantity".to_string(), Value::Int(2));
    r.insert("discount".to_string(), Value::Int(3_500));
    r.insert("rate".to_string(), Value::Int(1_250));
    r.insert("won".to_string(), Value::Bool(true));
    r.insert("close_date".to_string(), Value::Date(chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()));
    r.insert(
        "closed_at".to_string(),
        Value::DateTime(chrono::DateTime::parse_from_rfc3339("2026-11-25T10:30:00Z").unwrap().to_utc()),
    );
    r.insert("email".to_string(), Value::Text("a@b.co".into()));
    r.insert("phone".to_string(), Value::Text("+33 1 23 45".into()));
    r.insert("site".to_string(), Value::Text("https://x.io".into()));
    r.insert("stage".to_string(), Value::Text("won".into()));
    r.insert("colors".to_string(), Value::Json(serde_json::json!(["red", "blue"])));
    r.insert("account_id".to_string(), Value::Text("acc1".into()));
    r.insert("code".to_string(), Value::Text("D-0001".into()));
    r.insert("meta".to_string(), Value::Json(serde_json::json!({"source": "web", "score": 7, "ratio": 0.5})));
    r.insert("total".to_string(), Value::Int(246_900));
    r
}

pub fn user() -> ScriptUser {
    ScriptUser { id: "u1".into(), email: "ann@example.com".into(), roles: vec!["sales".into()] }
}

pub fn host() -> ScriptHost {
    ScriptHost::new(Limits::default())
}

pub fn compile(h: &ScriptHost, source: &str) -> Compiled {
    h.compile(source).unwrap_or_else(|e| panic!("does not compile: {e}\n{source}"))
}

/// Runs `source` once as `hook` over `record`.
pub fn run_hook(
    h: &ScriptHost,
    hook: ScriptHook,
    source: &str,
    record: &Row,
    host_api: Option<&dyn Host>,
    chain: &Chain,
) -> RunOutcome {
    let object = deal();
    let compiled = compile(h, source);
    h.run(
        &compiled,
        RunInput {
            object: &object,
            script_name: "test_script",
            hook,
            record,
            old: None,
            user: &user(),
            input: None,
            host: host_api,
            chain,
        },
    )
}

/// Runs `source` as an ACTION (no host) and returns its value as JSON, failing on errors.
pub fn eval(h: &ScriptHost, source: &str) -> serde_json::Value {
    let out = run_hook(h, ScriptHook::Action, source, &row(), None, &Chain::start(BudgetLimits::default()));
    if let Some(e) = out.failure {
        panic!("script failed: {e}\n{source}");
    }
    out.result
}

/// One save of `record` through the scripts of `object`.
pub fn save(h: &ScriptHost, object: &ObjectDefinition, record: &Row, old: Option<&Row>, chain: &Chain) -> SaveOutcome {
    let scripts = h.compile_object(object).unwrap_or_else(|(name, e)| panic!("`{name}` does not compile: {e}"));
    h.save(&scripts, SaveInput { object, record, old, user: &user(), chain })
}

/// A host API over an in-memory list of deals, recording every call.
pub struct FakeHost {
    pub object: Arc<ObjectDefinition>,
    pub records: Mutex<Vec<(String, Row)>>,
    pub calls: Mutex<Vec<String>>,
    /// When set, calls fail with this error.
    pub fail: Option<HostError>,
}

impl FakeHost {
    pub fn new(n: usize) -> FakeHost {
        let records = (0..n)
            .map(|i| {
                let mut r = row();
                r.insert("id".into(), Value::Text(format!("d{i}")));
                r.insert("amount".into(), Value::Int(1_000 * i as i64));
                (format!("d{i}"), r)
            })
            .collect();
        FakeHost { object: Arc::new(deal()), records: Mutex::new(records), calls: Mutex::new(vec![]), fail: None }
    }

    fn record(&self, id: &str, row: Row) -> HostRecord {
        HostRecord { object: self.object.clone(), id: id.to_string(), row }
    }

    fn apply(&self, row: &mut Row, values: &serde_json::Map<String, serde_json::Value>) -> Result<(), HostError> {
        for (k, v) in values {
            let f = self
                .object
                .field(k)
                .ok_or_else(|| HostError { code: "BAD_USER_INPUT".into(), message: format!("unknown field `{k}`") })?;
            let value = Value::coerce(f, v)
                .map_err(|i| HostError { code: "BAD_USER_INPUT".into(), message: format!("{k}: {}", i.message) })?;
            row.insert(f.column(), value);
        }
        Ok(())
    }
}

impl Host for FakeHost {
    fn find(&self, object: &str, filter: &serde_json::Value, limit: usize) -> Result<Vec<HostRecord>, HostError> {
        self.calls.lock().unwrap().push(format!("find {object} {filter} {limit}"));
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        let records = self.records.lock().unwrap();
        Ok(records.iter().take(limit).map(|(id, r)| self.record(id, r.clone())).collect())
    }

    fn create(
        &self,
        object: &str,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Result<HostRecord, HostError> {
        self.calls.lock().unwrap().push(format!("create {object} {}", serde_json::Value::Object(values.clone())));
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        let mut records = self.records.lock().unwrap();
        let id = format!("new{}", records.len());
        let mut r = Row::default();
        r.insert("id".into(), Value::Text(id.clone()));
        self.apply(&mut r, &values)?;
        records.push((id.clone(), r.clone()));
        Ok(self.record(&id, r))
    }

    fn update(
        &self,
        object: &str,
        id: &str,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Result<HostRecord, HostError> {
        self.calls.lock().unwrap().push(format!("update {object} {id} {}", serde_json::Value::Object(values.clone())));
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        let mut records = self.records.lock().unwrap();
        let Some((_, r)) = records.iter_mut().find(|(i, _)| i == id) else {
            return Err(HostError { code: "NOT_FOUND".into(), message: format!("no deal `{id}`") });
        };
        self.apply(r, &values)?;
        Ok(self.record(id, r.clone()))
    }
}
