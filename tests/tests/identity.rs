//! Users, hierarchy, owner transfer, deactivation, API tokens and sign-in throttling, through
//! the HTTP API on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use tessera_tests::{TestServer, each_backend, error_codes};

async fn deal_object(t: &TestServer) {
    t.object("deal", "deals", vec![json!({"name": "name", "label": "名称", "type": "TEXT"})]).await;
    t.role("sales_rep").await;
    t.grant("sales_rep", "deal", "read create update", "TEAM").await;
}

async fn create_deal(t: &TestServer, token: &str, name: &str) -> String {
    let r =
        t.data_ok_as(token, "mutation($n: String!) { createDeal(data: {name: $n}) { id } }", json!({"n": name})).await;
    r["createDeal"]["id"].as_str().unwrap().to_string()
}

async fn deal_names(t: &TestServer, token: &str) -> Vec<String> {
    let r = t
        .data_ok_as(token, "{ deals(first: 100, orderBy: [{name: AscNullsLast}]) { nodes { name } } }", json!({}))
        .await;
    r["deals"]["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect()
}

async fn status_of(t: &TestServer, token: &str) -> u16 {
    t.client
        .post(format!("{}/graphql", t.base))
        .bearer_auth(token)
        .json(&json!({"query": "{ me { id } }"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn managers_see_their_reports_at_any_depth_and_peers_do_not() {
    each_backend!(|t| {
        deal_object(&t).await;
        // A chain of 12 levels under one top manager, and a peer beside the chain.
        let mut chain: Vec<(String, String)> = Vec::new();
        for level in 0..12 {
            let manager = chain.last().map(|(id, _)| id.clone());
            chain.push(t.user(&format!("level{level}@example.com"), &["sales_rep"], manager.as_deref()).await);
        }
        let peer = t.user("peer@example.com", &["sales_rep"], Some(&chain[0].0)).await;
        create_deal(&t, &chain[11].1, "bottom").await;
        create_deal(&t, &chain[5].1, "middle").await;
        create_deal(&t, &peer.1, "peer's").await;

        assert_eq!(deal_names(&t, &chain[0].1).await, ["bottom", "middle", "peer's"]);
        assert_eq!(deal_names(&t, &chain[1].1).await, ["bottom", "middle"]);
        assert_eq!(deal_names(&t, &chain[6].1).await, ["bottom"]);
        assert_eq!(deal_names(&t, &chain[11].1).await, ["bottom"]);
        assert_eq!(deal_names(&t, &peer.1).await, ["peer's"]);

        // Moving the middle of the chain under the peer moves everyone below with it.
        let r = t
            .meta_ok(
                "mutation($id: String!, $m: String) { updateUser(id: $id, input: {manager: $m}) { manager } }",
                json!({"id": chain[5].0, "m": peer.0}),
            )
            .await;
        assert_eq!(r["updateUser"]["manager"], json!(peer.0));
        assert_eq!(deal_names(&t, &peer.1).await, ["bottom", "middle", "peer's"]);
        assert!(deal_names(&t, &chain[1].1).await.is_empty());
        assert_eq!(deal_names(&t, &chain[0].1).await, ["bottom", "middle", "peer's"]);

        // Cycles are refused and change nothing.
        let r = t
            .meta(
                "mutation($id: String!, $m: String) { updateUser(id: $id, input: {manager: $m}) { id } }",
                json!({"id": peer.0, "m": chain[11].0}),
            )
            .await;
        assert_eq!(error_codes(&r), vec!["BAD_USER_INPUT"]);
        assert_eq!(deal_names(&t, &peer.1).await, ["bottom", "middle", "peer's"]);

        // Removing a manager detaches the subtree.
        t.meta_ok(
            "mutation($id: String!) { updateUser(id: $id, input: {manager: null}) { id } }",
            json!({"id": chain[5].0}),
        )
        .await;
        assert_eq!(deal_names(&t, &peer.1).await, ["peer's"]);
        assert_eq!(deal_names(&t, &chain[5].1).await, ["bottom", "middle"]);
    });
}

#[tokio::test]
async fn transferring_ownership_moves_a_record_between_scopes() {
    each_backend!(|t| {
        deal_object(&t).await;
        t.role("sales_owner").await;
        t.grant("sales_owner", "deal", "read create update", "OWN").await;
        let boss = t.user("boss@example.com", &["sales_rep"], None).await;
        let alice = t.user("alice@example.com", &["sales_owner"], Some(&boss.0)).await;
        let bob = t.user("bob@example.com", &["sales_owner"], None).await;
        let id = create_deal(&t, &alice.1, "hand-over").await;
        assert_eq!(deal_names(&t, &alice.1).await, ["hand-over"]);
        assert_eq!(deal_names(&t, &boss.1).await, ["hand-over"]);

        let r = t
            .data_ok_as(
                &alice.1,
                "mutation($id: ID!, $o: ID!) { updateDeal(id: $id, data: {owner: $o}) { owner } }",
                json!({"id": id, "o": bob.0}),
            )
            .await;
        assert_eq!(r["updateDeal"]["owner"], json!(bob.0));
        // Alice no longer sees it, nor may she change it back; Bob now owns it.
        let r = t.data_ok_as(&alice.1, "query($id: ID!) { deal(id: $id) { id } }", json!({"id": id})).await;
        assert!(r["deal"].is_null());
        let r = t
            .data_as(
                &alice.1,
                "mutation($id: ID!, $o: ID!) { updateDeal(id: $id, data: {owner: $o}) { id } }",
                json!({"id": id, "o": alice.0}),
            )
            .await;
        assert_eq!(error_codes(&r), vec!["NOT_FOUND"]);
        assert!(deal_names(&t, &boss.1).await.is_empty());
        assert_eq!(deal_names(&t, &bob.1).await, ["hand-over"]);
        // The transfer is in the audit log with before and after owner.
        let r = t
            .meta_ok("query($id: String!) { auditLog(recordId: $id) { action before after } }", json!({"id": id}))
            .await;
        let update = &r["auditLog"][0];
        assert_eq!(update["action"], json!("update"));
        assert_eq!(update["before"]["owner_id"], json!(alice.0));
        assert_eq!(update["after"]["owner_id"], json!(bob.0));
    });
}

#[tokio::test]
async fn deactivating_a_user_revokes_sessions_and_tokens_at_once() {
    each_backend!(|t| {
        deal_object(&t).await;
        let (id, session) = t.user("leaver@example.com", &["sales_rep"], None).await;
        let r = t
            .meta_ok(
                "mutation($u: String!) { createApiToken(user: $u, name: \"erp-sync\") { id token } }",
                json!({"u": id}),
            )
            .await;
        let api = r["createApiToken"]["token"].as_str().unwrap().to_string();
        assert_eq!(status_of(&t, &session).await, 200);
        assert_eq!(status_of(&t, &api).await, 200);

        let r = t
            .meta_ok(
                "mutation($id: String!) { updateUser(id: $id, input: {active: false}) { active } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(r["updateUser"]["active"], json!(false));
        assert_eq!(status_of(&t, &session).await, 401, "the session dies at once, not after a cache expires");
        assert_eq!(status_of(&t, &api).await, 401);
        assert!(t.login("leaver@example.com", "a long enough password").await.is_none());
        let r = t.meta_ok("query($u: String!) { apiTokens(user: $u) { name revokedAt } }", json!({"u": id})).await;
        assert!(!r["apiTokens"][0]["revokedAt"].is_null());

        // Reactivated, they sign in again, but old tokens stay dead.
        t.meta_ok("mutation($id: String!) { updateUser(id: $id, input: {active: true}) { id } }", json!({"id": id}))
            .await;
        assert!(t.login("leaver@example.com", "a long enough password").await.is_some());
        assert_eq!(status_of(&t, &api).await, 401);
        // An admin cannot deactivate themselves.
        let me = t.meta_ok("{ me { id } }", json!({})).await;
        let r = t
            .meta(
                "mutation($id: String!) { updateUser(id: $id, input: {active: false}) { id } }",
                json!({"id": me["me"]["id"]}),
            )
            .await;
        assert_eq!(error_codes(&r), vec!["BAD_USER_INPUT"]);
    });
}

#[tokio::test]
async fn api_tokens_are_shown_once_listed_without_secrets_and_revocable() {
    each_backend!(|t| {
        deal_object(&t).await;
        let (id, _) = t.user("erp@example.com", &["sales_rep"], None).await;
        let r = t
            .meta_ok(
                "mutation($u: String!) { createApiToken(user: $u, name: \"erp-sync\") { id token } }",
                json!({"u": id}),
            )
            .await;
        let token = r["createApiToken"]["token"].as_str().unwrap().to_string();
        let token_id = r["createApiToken"]["id"].as_str().unwrap().to_string();
        create_deal(&t, &token, "from erp").await;
        let listed =
            t.meta_ok("query($u: String!) { apiTokens(user: $u) { id name revokedAt } }", json!({"u": id})).await;
        assert_eq!(listed["apiTokens"], json!([{"id": token_id, "name": "erp-sync", "revokedAt": null}]));
        assert!(!listed.to_string().contains(&token), "the secret is never listed");

        t.meta_ok("mutation($id: String!) { revokeApiToken(id: $id) }", json!({"id": token_id})).await;
        assert_eq!(status_of(&t, &token).await, 401);
        let r = t.meta("mutation($id: String!) { revokeApiToken(id: $id) }", json!({"id": token_id})).await;
        assert_eq!(error_codes(&r), vec!["NOT_FOUND"]);
        // Changes of identity and access are audited.
        let r = t.meta_ok("{ auditLog(category: \"access\", first: 50) { action } }", json!({})).await;
        let actions: Vec<&str> =
            r["auditLog"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for a in ["create_role", "set_object_permission", "create_user", "create_api_token", "revoke_api_token"] {
            assert!(actions.contains(&a), "{a} missing from {actions:?}");
        }
    });
}

#[tokio::test]
async fn repeated_failed_sign_ins_lock_the_account_and_are_audited() {
    each_backend!(|t| {
        t.role("sales_rep").await;
        let (id, _) = t.user("target@example.com", &["sales_rep"], None).await;
        let attempt = |password: &'static str| {
            let t = &t;
            async move {
                t.client
                    .post(format!("{}/auth/login", t.base))
                    .json(&json!({"email": "target@example.com", "password": password}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        for _ in 0..5 {
            assert_eq!(attempt("wrong password!").await, 401);
        }
        // Locked: even the right password is refused until the lock ends, with the answer of a
        // wrong one (a locked account must not be told from any other).
        assert_eq!(attempt("a long enough password").await, 401);
        let r = t.meta_ok("query($id: String!) { user(id: $id) { lockedUntil } }", json!({"id": id})).await;
        assert!(!r["user"]["lockedUntil"].is_null());
        let r = t
            .meta_ok(
                "query($id: String!) { auditLog(category: \"auth\", recordId: $id, first: 20) { action } }",
                json!({"id": id}),
            )
            .await;
        let actions: Vec<&str> =
            r["auditLog"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions.iter().filter(|a| **a == "login_failed").count(), 5, "{actions:?}");
        assert!(actions.contains(&"account_locked") && actions.contains(&"login_locked_out"), "{actions:?}");
        // An admin resetting the password unlocks the account.
        t.meta_ok(
            "mutation($id: String!) { updateUser(id: $id, input: {password: \"another long password\"}) { lockedUntil } }",
            json!({"id": id}),
        )
        .await;
        assert!(t.login("target@example.com", "another long password").await.is_some());
    });
}

#[tokio::test]
async fn one_address_failing_many_sign_ins_is_throttled() {
    each_backend!(|t| {
        let mut statuses = Vec::new();
        for i in 0..21 {
            let r = t
                .client
                .post(format!("{}/auth/login", t.base))
                .json(&json!({"email": format!("nobody{i}@example.com"), "password": "guess"}))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
        assert_eq!(statuses[20], 429);
    });
}

#[tokio::test]
async fn users_with_the_same_roles_share_one_generated_schema() {
    each_backend!(|t| {
        deal_object(&t).await;
        let mut tokens = Vec::new();
        for i in 0..5 {
            tokens.push(t.user(&format!("rep{i}@example.com"), &["sales_rep"], None).await.1);
        }
        for token in &tokens {
            deal_names(&t, token).await;
        }
        let state = &t.server.as_ref().unwrap().state;
        assert_eq!(state.metadata.current().cached_views(), 1);
        // A different set of rules is a different view.
        t.role("viewer").await;
        t.grant("viewer", "deal", "read", "ALL").await;
        let viewer = t.user("viewer@example.com", &["viewer"], None).await.1;
        deal_names(&t, &viewer).await;
        assert_eq!(state.metadata.current().cached_views(), 2);
        // Changing a role's rules takes effect on the next request.
        t.grant("viewer", "deal", "", "ALL").await;
        let r: Value = t.data_as(&viewer, "{ deals { nodes { id } } }", json!({})).await;
        assert_eq!(error_codes(&r), vec!["FORBIDDEN"]);
    });
}
