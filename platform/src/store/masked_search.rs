//! Searches of fields a caller sees masked. Finding a record by an exact value is what a call
//! centre needs (who is calling from this number?), but each `eq` is a guess at a hidden value
//! that the answer confirms or denies, and enough guesses recover it. So the query layer allows
//! only single-value equality on such fields and marks each as a probe (`Filter::Probe`); here
//! every new probe of a request is counted against a per-field cap for the request and a
//! per-user rate, and logged in the sensitive access log (`via: search`) with the records it
//! matched, never with the value searched for.

use std::hash::BuildHasher;
use std::num::NonZeroU32;

use chrono::Utc;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sea_orm::ConnectionTrait;
use sea_query::{Expr, ExprTrait, Query};
use tessera_metadata::{Action, FieldName, Filter, FilterOp, ObjectName, camel_case};

use super::access_log::{ReadBatch, Via};
use super::filter::condition;
use super::{Store, StoreResult, enforce};
use crate::graphql::{Caller, DataError, DataResult};

/// Limits of searches on fields a caller sees masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedSearchLimits {
    /// Most different values of one masked field one request may search for.
    pub per_field_per_request: u32,
    /// Most new values one user may search for in masked fields per minute (as a steady rate,
    /// with this many at once at most).
    pub per_user_per_minute: u32,
}

/// One value of a field at a time is the call centre's need: a few leave room for a client
/// that checks a number in two forms, not for guessing.
pub const DEFAULT_MASKED_SEARCHES_PER_FIELD: u32 = 3;
/// A person at a desk looks up a few callers a minute; guessing the four hidden digits of a
/// masked phone number takes thousands of searches, each of them in the access log.
pub const DEFAULT_MASKED_SEARCHES_PER_MINUTE: u32 = 30;

impl Default for MaskedSearchLimits {
    fn default() -> Self {
        MaskedSearchLimits {
            per_field_per_request: DEFAULT_MASKED_SEARCHES_PER_FIELD,
            per_user_per_minute: DEFAULT_MASKED_SEARCHES_PER_MINUTE,
        }
    }
}

/// Most matched records one probe's log entry names. An exact value matches few records (one,
/// for a unique phone); a common one matches many, and the first of them say enough.
const LOGGED_MATCHES: u64 = 100;
/// Users whose rate the limiter tracks before it forgets those whose quota is full again.
const TRACKED_USERS: usize = 10_000;

/// The limits and the per-user rates of searches on masked fields.
pub(super) struct MaskedSearchGuard {
    limits: MaskedSearchLimits,
    rates: DefaultKeyedRateLimiter<String>,
}

impl MaskedSearchGuard {
    pub(super) fn new(limits: MaskedSearchLimits) -> MaskedSearchGuard {
        let per_minute = NonZeroU32::new(limits.per_user_per_minute).unwrap_or(NonZeroU32::MIN);
        MaskedSearchGuard { limits, rates: RateLimiter::keyed(Quota::per_minute(per_minute)) }
    }
}

/// A probe of a filter: the object and field searched, and the condition.
struct Probe<'a> {
    object: &'a ObjectName,
    field: &'a FieldName,
    condition: &'a Filter,
}

fn probes<'a>(filter: &'a Filter, out: &mut Vec<Probe<'a>>) {
    match filter {
        Filter::Probe { object, field, filter } => out.push(Probe { object, field, condition: filter }),
        Filter::Related { filter, .. } | Filter::Not(filter) => probes(filter, out),
        Filter::And(parts) | Filter::Or(parts) => parts.iter().for_each(|p| probes(p, out)),
        Filter::Column { .. } | Filter::OwnedBy { .. } | Filter::Blind { .. } => {}
    }
}

/// The value a probe searches for, as the request's ledger tells values apart.
fn searched_value(condition: &Filter) -> String {
    match condition {
        Filter::Column { op: FilterOp::Eq(v), .. } => format!("{v:?}"),
        Filter::Blind { values, .. } => values.join("\u{0}"),
        other => format!("{other:?}"),
    }
}

impl Store {
    /// Sets the limits of searches on masked fields (at start-up).
    pub fn configure_masked_search(&mut self, limits: MaskedSearchLimits) {
        self.masked_search = std::sync::Arc::new(MaskedSearchGuard::new(limits));
    }

    /// Admits the probes of a filter the caller is about to run, and logs the new ones with the
    /// records they match.
    pub(super) async fn admit_probes(&self, caller: &Caller, filter: Option<&Filter>) -> DataResult<()> {
        let mut found = Vec::new();
        if let Some(f) = filter {
            probes(f, &mut found);
        }
        if found.is_empty() {
            return Ok(());
        }
        // A search must be logged to be made.
        self.access_log_available()?;
        let fresh = self.admit_new(caller, found)?;
        let mut entries = Vec::with_capacity(fresh.len());
        for probe in fresh {
            entries.push(ReadBatch {
                at: Utc::now(),
                user_id: caller.user_id.clone(),
                object: probe.object.to_string(),
                fields: vec![probe.field.to_string()],
                via: Via::Search,
                request_id: caller.request_id.clone(),
                record_ids: self.probe_matches(caller, probe.object, probe.condition).await.map_err(DataError::from)?,
            });
        }
        Ok(self.log_sensitive_reads(entries).await?)
    }

    /// The probes among `found` with values this request has not searched for yet, admitted:
    /// within the request's cap per field and the caller's rate, all of them or none.
    fn admit_new<'a>(&self, caller: &Caller, found: Vec<Probe<'a>>) -> DataResult<Vec<Probe<'a>>> {
        let limits = &self.masked_search.limits;
        let cap = usize::try_from(limits.per_field_per_request).unwrap_or(usize::MAX);
        let mut seen = caller.masked_searches.seen.lock();
        let seen = &mut *seen;
        let mut fresh: Vec<(Probe<'a>, (String, String), u64)> = Vec::new();
        for probe in found {
            let key = (probe.object.to_string(), probe.field.to_string());
            let hash = seen.hasher.hash_one(searched_value(probe.condition));
            let before = seen.values.get(&key);
            let new_here = || fresh.iter().filter(|(_, k, _)| *k == key);
            if before.is_some_and(|values| values.contains(&hash)) || new_here().any(|(_, _, h)| *h == hash) {
                continue;
            }
            if before.map_or(0, |values| values.len()) + new_here().count() >= cap {
                return Err(DataError::bad_input(format!(
                    "`{}` of `{}` is shown to you masked: one request may search it for at most {cap} different \
                     values",
                    camel_case(probe.field.as_str()),
                    probe.object
                )));
            }
            fresh.push((probe, key, hash));
        }
        if let Some(n) = NonZeroU32::new(u32::try_from(fresh.len()).unwrap_or(u32::MAX)) {
            let rates = &self.masked_search.rates;
            if !matches!(rates.check_key_n(&caller.user_id, n), Ok(Ok(()))) {
                return Err(DataError::RateLimited(format!(
                    "you searched fields shown to you masked more than {} times a minute; try again later",
                    limits.per_user_per_minute
                )));
            }
            if rates.len() > TRACKED_USERS {
                rates.retain_recent();
            }
        }
        for (_, key, hash) in &fresh {
            seen.values.entry(key.clone()).or_default().insert(*hash);
        }
        Ok(fresh.into_iter().map(|(probe, _, _)| probe).collect())
    }

    /// The first records of `object` the caller may read whose value a probe's condition
    /// matches.
    async fn probe_matches(&self, caller: &Caller, object: &ObjectName, probed: &Filter) -> StoreResult<Vec<String>> {
        let Ok(scope) = enforce::rows(caller, object.as_str(), Action::Read) else { return Ok(Vec::new()) };
        let Some(filter) = Filter::and_maybe(Some(self.hash_filter(probed.clone())?), scope) else {
            return Ok(Vec::new());
        };
        let q = Query::select()
            .column("id")
            .from(object.table())
            .and_where(Expr::col("deleted_at").is_null())
            .cond_where(condition(&filter))
            .limit(LOGGED_MATCHES)
            .to_owned();
        let rows = self.db.query_all(&q).await?;
        Ok(rows.iter().map(|r| r.try_get_by_index::<String>(0)).collect::<Result<_, _>>()?)
    }
}
