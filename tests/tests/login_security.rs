//! Sign-in under attack, through HTTP on SQLite and PostgreSQL: limits that parallel guesses
//! cannot outrun, answers that tell nothing about accounts, clients behind trusted proxies,
//! audit entries that a flood cannot multiply, and memory that a flood cannot exhaust.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use tessera_platform::http::{TrustedProxies, parse_trusted_proxy};
use tessera_platform::server::Config;
use tessera_tests::{TestServer, backends};

// The server's allocator, so that the flood test measures what a server would hold.
#[global_allocator]
static GLOBAL: tessera_alloc::MiMalloc = tessera_alloc::MiMalloc;

/// The password `TestServer::user` gives its users.
const PASSWORD: &str = "a long enough password";

/// The flood test measures the whole process's memory: it runs alone, the others together.
static MEMORY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

/// One sign-in, as a proxy in front of the server would forward it when `forwarded` is given.
async fn sign_in(t: &TestServer, email: &str, password: &str, forwarded: Option<&str>) -> Answer {
    let mut request =
        t.client.post(format!("{}/auth/login", t.base)).json(&json!({"email": email, "password": password}));
    if let Some(f) = forwarded {
        request = request.header("x-forwarded-for", f);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let text = r.text().await.unwrap();
    Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)), retry_after }
}

fn code(a: &Answer) -> &str {
    a.body["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

/// Limits of these tests: a sign-in waits as long as it needs for its password check (the pool
/// is the subject of its own tests), and the local peer is a trusted proxy.
fn patient(c: &mut Config) {
    c.login_limits.hash_queue_wait = Duration::from_secs(120);
    c.trusted_proxies = TrustedProxies::new(vec![parse_trusted_proxy("127.0.0.1").unwrap()]);
}

/// The audit actions of the `auth` category, newest first (of one user when `user` is given).
async fn auth_audit(t: &TestServer, user: Option<&str>) -> Vec<Value> {
    let r = t
        .meta_ok(
            "query($u: String) { auditLog(category: \"auth\", recordId: $u, first: 500) { action after } }",
            json!({"u": user}),
        )
        .await;
    r["auditLog"].as_array().unwrap().clone()
}

fn count(entries: &[Value], action: &str) -> usize {
    entries.iter().filter(|e| e["action"] == action).count()
}

async fn locked_until(t: &TestServer, id: &str) -> Value {
    t.meta_ok("query($id: String!) { user(id: $id) { lockedUntil } }", json!({"id": id})).await["user"]["lockedUntil"]
        .clone()
}

#[tokio::test]
async fn parallel_guesses_at_one_account_check_no_more_passwords_than_the_lockout_allows() {
    let _shared = MEMORY.read().await;
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| {
            patient(c);
            c.login_limits.account_failures = 3;
        })
        .await;
        t.role("sales_rep").await;
        let (id, _) = t.user("target@example.com", &["sales_rep"], None).await;
        // Each guess from its own address, so that only the account's count can stop them.
        let guesses = (0..16).map(|i| {
            let t = &t;
            async move {
                sign_in(t, "target@example.com", &format!("guess number {i}"), Some(&format!("198.51.100.{i}"))).await
            }
        });
        let answers = join_all(guesses).await;
        assert!(answers.iter().all(|a| a.status == 401), "{answers:?}");
        assert!(!locked_until(&t, &id).await.is_null());
        let audit = auth_audit(&t, Some(&id)).await;
        assert_eq!(count(&audit, "login_failed"), 3, "only three guesses were checked: {audit:?}");
        assert_eq!(count(&audit, "login_locked_out"), 13, "{audit:?}");
        assert_eq!(count(&audit, "account_locked"), 1, "{audit:?}");
        t.stop().await;
    }
}

#[tokio::test]
async fn parallel_failures_from_one_address_are_refused_past_its_limit() {
    let _shared = MEMORY.read().await;
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| {
            patient(c);
            c.login_limits.address_failures = 4;
        })
        .await;
        // Successes hand their place back: more of them than the limit use none of it.
        for _ in 0..6 {
            assert!(t.login(tessera_tests::ADMIN_EMAIL, tessera_tests::ADMIN_PASSWORD).await.is_some());
        }
        let attempts = (0..16).map(|i| {
            let t = &t;
            async move { sign_in(t, &format!("nobody{i}@example.com"), "a guessed password", None).await }
        });
        let answers = join_all(attempts).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 4, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 12, "{statuses:?}");
        let refused = answers.iter().find(|a| a.status == 429).unwrap();
        assert_eq!(code(refused), "RATE_LIMITED");
        assert!(refused.retry_after.is_some_and(|s| (1..=15 * 60).contains(&s)), "{refused:?}");
        t.stop().await;
    }
}

/// Makes the four kinds of accounts that a refused sign-in must not tell apart.
async fn accounts_to_tell_apart(t: &TestServer) -> Vec<(&'static str, &'static str)> {
    t.role("sales_rep").await;
    t.user("wrong@example.com", &["sales_rep"], None).await;
    let (inactive, _) = t.user("inactive@example.com", &["sales_rep"], None).await;
    t.meta_ok("mutation($id: String!) { updateUser(id: $id, input: {active: false}) { id } }", json!({"id": inactive}))
        .await;
    let (locked, _) = t.user("locked@example.com", &["sales_rep"], None).await;
    for _ in 0..2 {
        assert_eq!(sign_in(t, "locked@example.com", "not the password", None).await.status, 401);
    }
    assert!(!locked_until(t, &locked).await.is_null());
    vec![
        ("nobody@example.com", PASSWORD),
        ("inactive@example.com", PASSWORD),
        ("locked@example.com", PASSWORD),
        ("wrong@example.com", "not the password"),
    ]
}

#[tokio::test]
async fn unknown_inactive_locked_and_wrong_password_get_the_same_answer() {
    let _shared = MEMORY.read().await;
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| c.login_limits.account_failures = 2).await;
        let cases = accounts_to_tell_apart(&t).await;
        let mut answers = Vec::new();
        for (email, password) in &cases {
            let a = sign_in(&t, email, password, None).await;
            answers.push((a.status, a.body, a.retry_after));
        }
        for (case, answer) in cases.iter().zip(&answers) {
            assert_eq!(answer, &answers[0], "{case:?} answers differently from an unknown email");
        }
        assert_eq!(answers[0].0, 401);
        assert_eq!(answers[0].1["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        t.stop().await;
    }
}

#[tokio::test]
async fn every_refused_sign_in_costs_one_password_check() {
    let _shared = MEMORY.read().await;
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| c.login_limits.account_failures = 2).await;
        let cases = accounts_to_tell_apart(&t).await;
        let login = &t.server.as_ref().unwrap().state.login;
        // The positive control: a success is one check too.
        let before = login.password_checks();
        assert!(t.login("wrong@example.com", PASSWORD).await.is_some());
        assert_eq!(login.password_checks(), before + 1);
        for (email, password) in &cases {
            let before = login.password_checks();
            assert_eq!(sign_in(&t, email, password, None).await.status, 401);
            assert_eq!(login.password_checks(), before + 1, "{email} is checked like any account");
        }
        t.stop().await;
    }
}

#[tokio::test]
async fn overlong_credentials_are_refused_as_input_and_leave_no_audit_entry() {
    let _shared = MEMORY.read().await;
    for backend in backends() {
        let t = TestServer::start(backend).await;
        let before = auth_audit(&t, None).await.len();
        let long_email = format!("{}@example.com", "x".repeat(250));
        let a = sign_in(&t, &long_email, "a guessed password", None).await;
        assert_eq!((a.status, code(&a)), (400, "BAD_USER_INPUT"), "{a:?}");
        let a = sign_in(&t, "nobody@example.com", &"p".repeat(257), None).await;
        assert_eq!((a.status, code(&a)), (400, "BAD_USER_INPUT"), "{a:?}");
        let a = sign_in(&t, &"y".repeat(1 << 20), "a guessed password", None).await;
        assert_eq!((a.status, code(&a)), (413, "BAD_USER_INPUT"), "{a:?}");
        // The longest accepted email and password are an ordinary failure, audited.
        let longest = format!("{}@example.com", "z".repeat(254 - "@example.com".len()));
        assert_eq!(sign_in(&t, &longest, &"p".repeat(256), None).await.status, 401);
        let audit = auth_audit(&t, None).await;
        assert_eq!(audit.len(), before + 1, "{audit:?}");
        assert_eq!(audit[0]["after"]["email"], json!(longest));
        t.stop().await;
    }
}

#[tokio::test]
async fn refused_attempts_are_audited_once_per_address_and_window_with_their_count() {
    let _shared = MEMORY.read().await;
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| c.login_limits.address_failures = 2).await;
        for _ in 0..2 {
            assert_eq!(sign_in(&t, "nobody@example.com", "a guessed password", None).await.status, 401);
        }
        for _ in 0..10 {
            let a = sign_in(&t, &format!("{}@example.com", "n".repeat(200)), "a guessed password", None).await;
            assert_eq!(a.status, 429);
        }
        let audit = auth_audit(&t, None).await;
        assert_eq!(count(&audit, "login_failed"), 2, "{audit:?}");
        assert_eq!(count(&audit, "login_throttled"), 0, "the window is still open: {audit:?}");
        // Stopping writes the open window's entry.
        let t = t.restart().await;
        let audit = auth_audit(&t, None).await;
        let throttled: Vec<&Value> = audit.iter().filter(|e| e["action"] == "login_throttled").collect();
        assert_eq!(throttled.len(), 1, "{audit:?}");
        assert_eq!(throttled[0]["after"]["refused"], json!(10));
        assert_eq!(throttled[0]["after"]["address"], json!("127.0.0.1"));
        assert!(throttled[0]["after"].get("email").is_none(), "refused attempts do not store what they sent");
        t.stop().await;
    }
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_counted_apart_and_ipv6_by_64() {
    let _shared = MEMORY.read().await;
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| {
            patient(c);
            c.login_limits.address_failures = 2;
        })
        .await;
        let fail = |forwarded: &'static str| {
            let t = &t;
            async move { sign_in(t, "nobody@example.com", "a guessed password", Some(forwarded)).await.status }
        };
        assert_eq!([fail("198.51.100.1").await, fail("198.51.100.1").await], [401, 401]);
        assert_eq!(fail("198.51.100.1").await, 429);
        assert_eq!(fail("198.51.100.2").await, 401, "another client behind the same proxy");
        // What the client writes left of the proxy's entry changes nothing.
        assert_eq!(fail("203.0.113.50, 198.51.100.1").await, 429);
        // An IPv6 /64 is one client.
        assert_eq!([fail("2001:db8:1:2::1").await, fail("2001:db8:1:2::2").await], [401, 401]);
        assert_eq!(fail("2001:db8:1:2:ffff::9").await, 429);
        assert_eq!(fail("2001:db8:1:3::1").await, 401);
        // The proxy itself was never counted.
        assert!(t.login(tessera_tests::ADMIN_EMAIL, tessera_tests::ADMIN_PASSWORD).await.is_some());
        t.stop().await;

        // Without trusted proxies, the header is the client's word and is ignored.
        let t = TestServer::start_with(backend, |c| c.login_limits.address_failures = 2).await;
        let fail = |forwarded: &'static str| {
            let t = &t;
            async move { sign_in(t, "nobody@example.com", "a guessed password", Some(forwarded)).await.status }
        };
        assert_eq!([fail("198.51.100.1").await, fail("198.51.100.2").await], [401, 401]);
        assert_eq!(fail("198.51.100.3").await, 429);
        t.stop().await;
    }
}

#[tokio::test]
async fn a_full_address_table_forgets_the_least_recent_address_not_everyone() {
    let _shared = MEMORY.read().await;
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| {
            patient(c);
            c.login_limits.address_failures = 1;
            c.login_limits.tracked_addresses = 3;
        })
        .await;
        let fail = |forwarded: &'static str| {
            let t = &t;
            async move { sign_in(t, "nobody@example.com", "a guessed password", Some(forwarded)).await.status }
        };
        assert_eq!(fail("198.51.100.1").await, 401);
        assert_eq!(fail("198.51.100.1").await, 429);
        assert_eq!([fail("198.51.100.2").await, fail("198.51.100.3").await], [401, 401]);
        // The table is full (the admin's sign-in from the proxy itself went first). Seen again,
        // the refused address is the most recent, and .2 the least.
        assert_eq!(fail("198.51.100.1").await, 429);
        assert_eq!(fail("198.51.100.4").await, 401);
        assert_eq!(fail("198.51.100.1").await, 429, "a new address must not reset the others");
        assert_eq!(fail("198.51.100.3").await, 429);
        t.stop().await;
    }
}

#[tokio::test]
async fn sign_ins_beyond_the_password_check_pool_are_answered_503_with_retry_after() {
    let _shared = MEMORY.read().await;
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| {
            patient(c);
            c.login_limits.hash_concurrency = 1;
            c.login_limits.hash_queue_wait = Duration::ZERO;
        })
        .await;
        let mut busy = None;
        let mut statuses = Vec::new();
        for round in 0..5 {
            let attempts = (0..12).map(|i| {
                let t = &t;
                let forwarded = format!("198.51.{round}.{i}");
                async move { sign_in(t, "nobody@example.com", "a guessed password", Some(&forwarded)).await }
            });
            for a in join_all(attempts).await {
                statuses.push(a.status);
                if a.status == 503 {
                    busy = Some(a);
                }
            }
            if busy.is_some() {
                break;
            }
        }
        let busy = busy.unwrap_or_else(|| panic!("one check at a time, yet nobody waited: {statuses:?}"));
        assert_eq!(code(&busy), "UNAVAILABLE");
        assert!(busy.retry_after.is_some_and(|s| s >= 1), "{busy:?}");
        assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
        assert!(statuses.contains(&401));
        t.stop().await;
    }
}

/// The process's resident memory and its peak since `reset_peak`, in KiB (Linux).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Sets the peak to the present resident size (`clear_refs` 5, Linux 4.0 and later).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// A body of 1 MiB, shared by every request that sends it.
static HUGE_EMAIL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    json!({"email": format!("{}@example.com", "h".repeat(1 << 20)), "password": "a guessed password"}).to_string()
});

#[tokio::test]
async fn a_login_flood_keeps_memory_bounded_and_lets_the_legitimate_user_in_afterwards() {
    // Argon2's memory per password check, and the checks allowed at once.
    const CHECK_KIB: u64 = 7 * 1024;
    const CHECKS_AT_ONCE: usize = 2;
    // Connections, buffers and tasks of 300 requests on both sides of the socket (about 80 KiB
    // each), and the database's caches. Without the bound on checks, the flood grows memory by
    // about 200 MiB here (and by gigabytes with glibc's allocator).
    const SLACK_KIB: u64 = 64 * 1024;
    let _alone = MEMORY.write().await;
    for backend in backends() {
        let t = TestServer::start_with(backend, |c| {
            c.trusted_proxies = TrustedProxies::new(vec![parse_trusted_proxy("127.0.0.1").unwrap()]);
            c.login_limits.hash_concurrency = CHECKS_AT_ONCE;
            c.login_limits.hash_queue_wait = Duration::from_millis(500);
        })
        .await;
        t.role("sales_rep").await;
        let (legit, _) = t.user("legit@example.com", &["sales_rep"], None).await;
        t.user("victim@example.com", &["sales_rep"], None).await;
        let huge = HUGE_EMAIL.as_str();

        reset_peak();
        let (start, _) = memory_kib();
        let requests = (0..300).map(|i| {
            let t = &t;
            async move {
                // Every request from its own address: the address limit does not save the server.
                let forwarded = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
                let request = t.client.post(format!("{}/auth/login", t.base)).header("x-forwarded-for", forwarded);
                let request = match i % 8 {
                    0 => request.header("content-type", "application/json").body(huge),
                    1 => request.json(&json!({"email": format!("{}@example.com", "l".repeat(4000)), "password": "x"})),
                    2 | 3 => request.json(&json!({"email": "victim@example.com", "password": format!("guess {i}")})),
                    _ => request.json(&json!({"email": format!("nobody{i}@example.com"), "password": "a guessed one"})),
                };
                match request.send().await {
                    Ok(r) => Some(r.status().as_u16()),
                    // A server may close a connection whose body it refused before it was sent.
                    Err(_) if i % 8 == 0 => None,
                    Err(e) => panic!("request {i}: {e}"),
                }
            }
        });
        let statuses: Vec<u16> = join_all(requests).await.into_iter().flatten().collect();
        let (_, peak) = memory_kib();
        let growth = peak.saturating_sub(start);
        let bound = CHECKS_AT_ONCE as u64 * CHECK_KIB + SLACK_KIB;
        eprintln!("[{backend:?}] login flood: peak grew by {growth} KiB (bound {bound} KiB); statuses {statuses:?}");
        assert!(growth <= bound, "[{backend:?}] the flood grew memory by {growth} KiB, more than {bound} KiB");
        assert!(statuses.iter().all(|s| [400, 401, 413, 503].contains(s)), "{statuses:?}");
        assert!(statuses.contains(&401) && statuses.contains(&503), "{statuses:?}");

        // The flood is over: the legitimate user, from an address of their own, gets in.
        assert!(locked_until(&t, &legit).await.is_null());
        assert!(t.login("legit@example.com", PASSWORD).await.is_some());
        t.stop().await;
    }
}
