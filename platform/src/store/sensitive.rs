//! Sensitive fields on the record path. Writes: values of encrypted fields become envelopes
//! bound to their record, with blind indexes beside them. Searches: plaintexts in `eq`/`in`
//! conditions become blind indexes. Reads: envelopes are opened and the value masked for
//! callers without `UNMASKED_READ`; every value shown unmasked is queued for the sensitive
//! access log (`access_log`).

use std::collections::HashSet;

use chrono::Utc;
use tessera_metadata::{FieldDefinition, Filter, Mask, ObjectDefinition, Value};

use super::access_log::{ReadBatch, Via};
use super::writes::Row;
use super::{Store, StoreResult};
use crate::crypto::{Aad, CryptoError, KeyRing};
use crate::graphql::{Caller, DataResult, Record};

/// The sensitive values a write's inputs gave and the write stored: what `reveal` hands back
/// to the writer as their own, neither masked nor logged. A value is the writer's only where the
/// record now holds exactly what its own input gave: not a value a rule changed after the input
/// gave it or filled in where the input left the field out (even if another input of the batch
/// gave it), nor a stored value the input named for a field its write left alone (an upsert
/// overwrites only the fields `upsert.update` lists on the records it matches). So a write shows
/// unmasked only what the writer typed, never what the record held before.
pub(super) struct Supplied {
    /// The sensitive fields' columns.
    columns: Vec<String>,
    /// Input after input, the value it gave each of `columns` (`None`: not given, or not a
    /// text). A single input stands for every record it wrote (an update of many records).
    given: Vec<Option<String>>,
    /// Record after record, whether it holds its values in plain text rather than as stored
    /// (records a create inserted, as opposed to those its upsert updated). Empty: none does.
    plain: Vec<bool>,
    /// The columns an upsert overwrote on the records it matched (those not in plain text);
    /// `None`: the write stored every column its input gave.
    overwritten: Option<HashSet<String>>,
}

impl Supplied {
    pub(super) fn of(object: &ObjectDefinition, inputs: &[crate::graphql::RecordInput]) -> Supplied {
        let fields: Vec<&FieldDefinition> = object.fields.iter().filter(|f| f.sensitive.is_some()).collect();
        let given = if fields.is_empty() {
            Vec::new()
        } else {
            let value = |input: &crate::graphql::RecordInput, f: &FieldDefinition| match input
                .get(f.name.as_str())
                .map(|json| Value::coerce(f, json))
            {
                Some(Ok(Value::Text(s))) => Some(s),
                _ => None,
            };
            inputs.iter().flat_map(|input| fields.iter().map(move |f| value(input, f))).collect()
        };
        Supplied { columns: fields.iter().map(|f| f.column()).collect(), given, plain: Vec::new(), overwritten: None }
    }

    /// Marks the records (in order) that hold their values in plain text.
    pub(super) fn holding_plain_text(mut self, plain: Vec<bool>) -> Supplied {
        self.plain = plain;
        self
    }

    /// Notes that the records an upsert matched had only the fields of `update` overwritten.
    pub(super) fn upserted(mut self, object: &ObjectDefinition, update: &[String]) -> Supplied {
        self.overwritten = Some(update.iter().filter_map(|name| object.field(name)).map(|f| f.column()).collect());
        self
    }

    /// Whether the write's `record`th record holds its values in plain text: then even a value
    /// that looks like an envelope is one written as it is.
    fn plain(&self, record: usize) -> bool {
        self.plain.get(record).copied().unwrap_or(false)
    }

    /// The value of `column` that the input of the write's `record`th record gave, if the
    /// write stored it (a rule may still have changed it: `reveal` compares).
    fn stored_input(&self, record: usize, column: &str) -> Option<&str> {
        let j = self.columns.iter().position(|c| c == column)?;
        if !self.plain(record) && self.overwritten.as_ref().is_some_and(|o| !o.contains(column)) {
            return None;
        }
        let width = self.columns.len();
        let input = if self.given.len() == width { 0 } else { record };
        self.given.get(input * width + j)?.as_deref()
    }
}

/// Opens a stored value of a field where it lies. With `tolerant` (the field is not encrypted
/// yet, or its values are being converted), a value that does not open is left as it is: a
/// forged envelope cannot authenticate, so it is plaintext not converted yet.
pub(super) fn open_value(
    ring: &KeyRing,
    object: &str,
    field: &FieldDefinition,
    record_id: &str,
    value: &mut String,
    tolerant: bool,
) -> Result<(), CryptoError> {
    let aad = Aad { object, field: field.name.as_str(), record_id };
    match ring.decrypt_in_place(aad, value) {
        Err(_) if tolerant => Ok(()),
        opened => opened,
    }
}

impl Store {
    /// Encrypts the encrypted fields of a row about to be written to record `record_id`, and
    /// fills their blind indexes.
    pub(super) fn seal_row(&self, object: &ObjectDefinition, record_id: &str, row: &mut Row) -> DataResult<()> {
        let mut ring: Option<std::sync::Arc<KeyRing>> = None;
        for f in object.fields.iter().filter(|f| f.is_encrypted()) {
            // The envelope replaces the plaintext in place: no new key, no second hashing.
            let Some(slot) = row.get_mut(f.column_name().as_ref()) else { continue };
            let index = match slot {
                Value::Text(plain) => {
                    let ring = match &ring {
                        Some(r) => r.clone(),
                        None => ring.insert(self.key_ring()?).clone(),
                    };
                    let index = f.is_searchable().then(|| Value::Int(ring.blind_index(f.field_type, plain)));
                    let aad = Aad { object: object.name.as_str(), field: f.name.as_str(), record_id };
                    *plain = ring.encrypt(aad, plain);
                    index
                }
                _ => None,
            };
            if f.is_searchable() {
                row.insert(f.blind_index_column(), index.unwrap_or(Value::Null));
            }
        }
        Ok(())
    }

    /// What a stored value equal to `value` may hold in the column a field is matched by
    /// (uniqueness, upserts): the value itself, or for an encrypted field its blind index under
    /// every key lookups match (more than one while a key rotates), the one a value gets when
    /// written first. Nothing for null.
    pub(super) fn match_keys(&self, field: &FieldDefinition, value: &Value) -> StoreResult<Vec<Value>> {
        Ok(match value {
            Value::Null => Vec::new(),
            Value::Text(plain) if field.is_encrypted() => {
                self.key_ring()?.blind_indexes(field.field_type, plain).into_iter().map(Value::Int).collect()
            }
            other => vec![other.clone()],
        })
    }

    /// Turns the plaintexts of blind-index conditions into blind indexes (anywhere in the
    /// filter, lookups included); while a field's values are still being encrypted the
    /// plaintexts are compared with its column too.
    pub(super) fn hash_filter(&self, filter: Filter) -> StoreResult<Filter> {
        Ok(match filter {
            Filter::Blind { object, field, field_type, column, index_column, values, hashes: None, .. } => {
                let ring = self.key_ring()?;
                // Every index a matching row may carry (more than one while a key rotates).
                let hashes = Some(values.iter().flat_map(|v| ring.blind_indexes(field_type, v)).collect());
                let plain = if self.is_converting(&object, &field) { values.clone() } else { Vec::new() };
                Filter::Blind { object, field, field_type, column, index_column, values, hashes, plain }
            }
            Filter::Related { column, target, filter } => {
                Filter::Related { column, target, filter: Box::new(self.hash_filter(*filter)?) }
            }
            Filter::And(parts) => {
                Filter::And(parts.into_iter().map(|p| self.hash_filter(p)).collect::<Result<_, _>>()?)
            }
            Filter::Or(parts) => Filter::Or(parts.into_iter().map(|p| self.hash_filter(p)).collect::<Result<_, _>>()?),
            Filter::Not(inner) => Filter::Not(Box::new(self.hash_filter(*inner)?)),
            Filter::Probe { object, field, filter } => {
                Filter::Probe { object, field, filter: Box::new(self.hash_filter(*filter)?) }
            }
            other => other,
        })
    }

    pub(super) fn hash_filter_opt(&self, filter: Option<Filter>) -> StoreResult<Option<Filter>> {
        filter.map(|f| self.hash_filter(f)).transpose()
    }

    /// Opens the sensitive values of records for the caller: the value itself where they may
    /// see it unmasked (logged), its mask otherwise. Values a record's own input gave and its
    /// write stored (`supplied`) are returned as given, unlogged. A value that fails to open is left out and
    /// named in `Record::broken`, so the API reports an error for that value only.
    pub(super) async fn reveal(
        &self,
        caller: &Caller,
        object: &ObjectDefinition,
        records: &mut [Record],
        via: Via,
        supplied: Option<&Supplied>,
    ) -> DataResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        // The sensitive fields the records hold, each with its column, named once per call
        // rather than once per value.
        let fields: Vec<(&FieldDefinition, String)> = object
            .fields
            .iter()
            .filter(|f| f.sensitive.is_some())
            .map(|f| (f, f.column()))
            .filter(|(_, column)| records.iter().any(|r| r.values.contains_key(column)))
            .collect();
        if fields.is_empty() {
            return Ok(());
        }
        let name = object.name.as_str();
        let converting: Vec<bool> = fields.iter().map(|(f, _)| self.is_converting(name, f.name.as_str())).collect();
        let mut ring = if fields.iter().zip(&converting).any(|((f, _), c)| f.is_encrypted() || *c) {
            Some(self.key_ring()?)
        } else {
            None
        };
        // A value written by a node that has rotated already names a key this node has not
        // loaded yet: reload the ring once rather than failing the value.
        if let Some(current) = &ring {
            let held = current.versions();
            let missing = records
                .iter()
                .flat_map(|r| fields.iter().filter_map(move |(_, column)| r.values.get(column)))
                .filter_map(|v| match v {
                    Value::Text(s) => crate::crypto::envelope_version(s),
                    _ => None,
                })
                .find(|v| !held.contains(v));
            if let Some(version) = missing {
                ring = Some(self.key_ring_holding(version).await?);
            }
        }
        // Whether the caller sees each field unmasked depends on the field, not the record.
        let grant = caller.access.object(name);
        let mut masks: Vec<Mask> = fields.iter().map(|(f, _)| f.sensitive.map_or(Mask::None, |s| s.mask)).collect();
        let mut unmasked: Vec<bool> = fields
            .iter()
            .zip(&masks)
            .map(|((f, _), mask)| *mask == Mask::None || grant.unmasked(f.name.as_str()))
            .collect();
        // While the access log cannot be written, nothing that it would have to hold is shown.
        // A write is done by now and answering an error would invite it again, so its record
        // comes back masked (a field shown to everyone, fully); a read is refused below.
        let withhold = via == Via::Write && self.access_log_available().is_err();
        if withhold {
            for (mask, shown) in masks.iter_mut().zip(&mut unmasked) {
                if *mask == Mask::None {
                    *mask = Mask::Full;
                }
                *shown = false;
            }
        }
        let now = Utc::now();
        // One read per set of fields shown (usually one per page), each with the positions of
        // those fields.
        let mut log: Vec<(Vec<usize>, ReadBatch)> = Vec::new();
        let mut shown: Vec<usize> = Vec::with_capacity(fields.len());
        for (r, record) in records.iter_mut().enumerate() {
            shown.clear();
            let Record { id, values, broken } = record;
            for (i, ((f, column), converting)) in fields.iter().zip(&converting).enumerate() {
                let Some(slot) = values.get_mut(column) else { continue };
                let Value::Text(value) = slot else { continue };
                // A record a create just inserted holds the values written, not envelopes. Those
                // its own input gave are shown as they are, neither masked nor logged; others
                // (filled in or changed by a rule) are shown like any value read. Every other
                // record holds stored values, opened whatever they look like, and shown as given
                // only where they are what this write stored from its input.
                let written = supplied.is_some_and(|s| s.plain(r));
                let own_input = supplied.and_then(|s| s.stored_input(r, column));
                if written && own_input == Some(value.as_str()) {
                    continue;
                }
                if let Some(ring) = &ring
                    && !written
                    && (f.is_encrypted() || *converting)
                {
                    // Opened where it lies: the envelope's buffer takes the plaintext.
                    let tolerant = *converting || !f.is_encrypted();
                    if let Err(e) = open_value(ring, name, f, id, value, tolerant) {
                        tracing::error!(object = name, field = %f.name, record = %id, error = %e, "a sensitive value cannot be opened");
                        *slot = Value::Null;
                        broken.push(column.clone());
                        continue;
                    }
                }
                if own_input == Some(value.as_str()) {
                    continue;
                }
                if unmasked[i] {
                    shown.push(i);
                } else {
                    *value = masks[i].apply(value);
                }
            }
            if !shown.is_empty() {
                match log.iter_mut().find(|(positions, _)| *positions == shown) {
                    Some((_, read)) => read.record_ids.push(id.clone()),
                    None => log.push((
                        shown.clone(),
                        ReadBatch {
                            at: now,
                            user_id: caller.user_id.clone(),
                            object: name.to_string(),
                            fields: shown.iter().map(|&i| fields[i].0.name.to_string()).collect(),
                            via,
                            request_id: caller.request_id.clone(),
                            record_ids: vec![id.clone()],
                        },
                    )),
                }
            }
        }
        if !log.is_empty() {
            self.access_log_available()?;
            self.access_log.record(log.into_iter().map(|(_, read)| read).collect()).await?;
        }
        Ok(())
    }
}
