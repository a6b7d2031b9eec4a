//! The backend conformance suite: every check runs once per backend (SQLite and PostgreSQL, each
//! on its own fresh database) through the `conformance!` macro at the bottom.

mod common;

use common::TestDb;
use kinto::permission::ObjectPermissions;
use kinto::settings::BackendKind;
use kinto::storage::{
    BackendError, Filter, FilterOp, ListQuery, ListRef, Object, ReadRequest, Sort,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const COLL: &str = "/buckets/b/collections/c";

fn records(parent: &str) -> ListRef<'_> {
    ListRef {
        resource_name: "record",
        parent_id: parent,
    }
}

fn obj(value: Value) -> Object {
    value.as_object().expect("a JSON object").clone()
}

fn lm(o: &Object) -> i64 {
    o["last_modified"].as_i64().expect("integer last_modified")
}

fn ids(objects: &[Object]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

/// The objects of a read page, parsed.
fn page(res: &kinto::storage::ListResult) -> Vec<Object> {
    res.objects.iter().map(|o| o.to_object().unwrap()).collect()
}

fn sorted_ids(objects: &[Object]) -> Vec<String> {
    let mut v = ids(objects);
    v.sort();
    v
}

fn filter(field: &str, op: FilterOp, value: Value) -> Filter {
    Filter {
        field: field.into(),
        op,
        value,
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Creates `(id, body)` records in one committed transaction; returns them as stored.
fn seed(db: &TestDb, parent: &str, items: &[(&str, Value)]) -> Vec<Object> {
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let mut out = Vec::new();
    for (id, body) in items {
        let mut o = obj(body.clone());
        o.insert("id".into(), json!(id));
        out.push(tx.create(records(parent), o).unwrap().expect("new object"));
    }
    tx.commit().unwrap();
    out
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps (2.5)

fn timestamps_strictly_increasing(db: &TestDb) {
    let items: Vec<(String, Value)> = (0..30)
        .map(|i| (format!("r{i}"), json!({"i": i})))
        .collect();
    let items: Vec<(&str, Value)> = items.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let created = seed(db, COLL, &items);
    for pair in created.windows(2) {
        assert!(lm(&pair[1]) > lm(&pair[0]), "{:?}", pair);
    }
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let t = tx.resource_timestamp(records(COLL)).unwrap();
    assert_eq!(t, lm(created.last().unwrap()));
    // Update and delete move the list timestamp forward.
    let updated = tx
        .update(records(COLL), "r3", obj(json!({"x": 1})))
        .unwrap();
    assert!(lm(&updated) > t);
    assert_eq!(updated["x"], json!(1));
    let gone = tx.delete(records(COLL), "r4", true, None).unwrap().unwrap();
    assert!(lm(&gone) > lm(&updated));
    assert_eq!(gone["deleted"], json!(true));
    assert_eq!(tx.resource_timestamp(records(COLL)).unwrap(), lm(&gone));
    // A record's list is independent from other lists and from its parent object.
    let other = tx
        .resource_timestamp(records("/buckets/b/collections/other"))
        .unwrap();
    assert!(other >= t - 60_000);
    tx.commit().unwrap();
}

fn list_timestamp_created_on_first_read(db: &TestDb) {
    let backend = db.backend();
    let empty = records("/buckets/b/collections/empty");
    let first = {
        let mut tx = backend.begin().unwrap();
        let ts = tx.resource_timestamp(empty).unwrap();
        tx.commit().unwrap();
        ts
    };
    std::thread::sleep(Duration::from_millis(5));
    let mut tx = backend.begin().unwrap();
    assert_eq!(
        tx.resource_timestamp(empty).unwrap(),
        first,
        "stable until a write"
    );
    let rec = tx.create(empty, obj(json!({"id": "x"}))).unwrap().unwrap();
    assert!(lm(&rec) > first);
    assert_eq!(tx.resource_timestamp(empty).unwrap(), lm(&rec));
    let all: BTreeMap<String, i64> = tx
        .all_resources_timestamps("record")
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(all.get(empty.parent_id), Some(&lm(&rec)));
    tx.commit().unwrap();

    // A read-only instance cannot initialise a list timestamp.
    let ro = db.backend_with(true);
    let mut tx = ro.begin().unwrap();
    match tx.resource_timestamp(records("/buckets/b/collections/never")) {
        Err(BackendError::ReadOnly) => {}
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    assert_eq!(tx.resource_timestamp(empty).unwrap(), lm(&rec));
}

fn all_resources_timestamps_per_parent(db: &TestDb) {
    let a = seed(
        db,
        "/buckets/b/collections/c1",
        &[("x", json!({})), ("y", json!({}))],
    );
    let b = seed(db, "/buckets/b/collections/c2", &[("x", json!({}))]);
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let empty = tx
        .resource_timestamp(records("/buckets/b/collections/c3"))
        .unwrap();
    let all: BTreeMap<String, i64> = tx
        .all_resources_timestamps("record")
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(all["/buckets/b/collections/c1"], lm(&a[1]));
    assert_eq!(all["/buckets/b/collections/c2"], lm(&b[0]));
    assert_eq!(all["/buckets/b/collections/c3"], empty);
    assert_eq!(all.len(), 3);
    assert!(tx
        .all_resources_timestamps("collection")
        .unwrap()
        .is_empty());
}

fn replication_hints(db: &TestDb) {
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let l = records(COLL);
    let first = tx.create(l, obj(json!({"id": "a"}))).unwrap().unwrap();
    let t = lm(&first);
    // A supplied value in the future is used and moves the list into the future.
    let future = t + 1_000_000;
    let b = tx
        .create(l, obj(json!({"id": "b", "last_modified": future})))
        .unwrap()
        .unwrap();
    assert_eq!(lm(&b), future);
    assert_eq!(tx.resource_timestamp(l).unwrap(), future);
    // A supplied value equal to the list timestamp is bumped.
    let c = tx
        .create(l, obj(json!({"id": "c", "last_modified": future})))
        .unwrap()
        .unwrap();
    let c_ts = lm(&c);
    assert_eq!(lm(&c), future + 1);
    // A supplied value lower than the list timestamp is stored as is; T does not move.
    let d = tx
        .create(l, obj(json!({"id": "d", "last_modified": t - 10})))
        .unwrap()
        .unwrap();
    assert_eq!(lm(&d), t - 10);
    assert_eq!(tx.resource_timestamp(l).unwrap(), future + 1);
    // Update: a value not greater than the current one is ignored (server assigns T+1).
    let e = tx
        .update(l, "d", obj(json!({"last_modified": t - 20})))
        .unwrap();
    assert_eq!(lm(&e), future + 2);
    let f = tx
        .update(l, "a", obj(json!({"last_modified": future + 50})))
        .unwrap();
    assert_eq!(lm(&f), future + 50);
    // Delete with a replication value greater than the object's.
    let g = tx.delete(l, "a", true, Some(future + 60)).unwrap().unwrap();
    assert_eq!(lm(&g), future + 60);
    let h = tx.delete(l, "b", true, Some(1)).unwrap().unwrap();
    assert_eq!(lm(&h), future + 61);
    // A supplied value colliding with another object of the list is a conflict.
    match tx.create(l, obj(json!({"id": "z", "last_modified": c_ts}))) {
        Err(BackendError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Objects, tombstones (2.6), transactions

fn create_get_update_conflict(db: &TestDb) {
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let l = records(COLL);
    let created = tx
        .create(
            l,
            obj(json!({"id": "a", "title": "x", "n": [1, {"b": null}]})),
        )
        .unwrap();
    let created = created.expect("created");
    assert_eq!(created["title"], json!("x"));
    let got = tx.get(l, "a").unwrap().expect("present");
    assert_eq!(got, created);
    assert_eq!(got["n"], json!([1, {"b": null}]));
    // A live object with that id exists.
    let existing = tx
        .create(l, obj(json!({"id": "a", "title": "y"})))
        .unwrap()
        .unwrap_err();
    assert_eq!(existing["title"], json!("x"));
    // Same id in another list or another resource type is another object.
    assert!(tx
        .get(records("/buckets/b/collections/d"), "a")
        .unwrap()
        .is_none());
    let coll = ListRef {
        resource_name: "collection",
        parent_id: "/buckets/b",
    };
    assert!(tx.create(coll, obj(json!({"id": "a"}))).unwrap().is_ok());
    // Update replaces the whole body.
    let replaced = tx
        .update(l, "a", obj(json!({"id": "a", "other": true})))
        .unwrap();
    assert_eq!(replaced.get("title"), None);
    assert_eq!(tx.get(l, "a").unwrap().unwrap(), replaced);
    // Update of a missing object creates it.
    let fresh = tx.update(l, "new", obj(json!({"k": 1}))).unwrap();
    assert_eq!(tx.get(l, "new").unwrap().unwrap(), fresh);
    tx.commit().unwrap();
}

fn tombstones_and_revival(db: &TestDb) {
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let l = records(COLL);
    tx.create(l, obj(json!({"id": "a", "title": "x"})))
        .unwrap()
        .unwrap();
    tx.create(l, obj(json!({"id": "keep", "title": "y"})))
        .unwrap()
        .unwrap();
    let tomb = tx.delete(l, "a", true, None).unwrap().unwrap();
    assert_eq!(
        obj(json!({"deleted": true, "id": "a", "last_modified": lm(&tomb)})),
        tomb
    );
    assert!(tx.get(l, "a").unwrap().is_none());
    assert!(
        tx.delete(l, "a", true, None).unwrap().is_none(),
        "already deleted"
    );
    assert!(tx.delete(l, "missing", true, None).unwrap().is_none());
    // Tombstones are listed only with include_deleted, and are not counted.
    let live = tx.list_all("record", COLL, &ListQuery::default()).unwrap();
    assert_eq!(ids(&live), vec!["keep"]);
    assert_eq!(tx.count_all("record", COLL, &[]).unwrap(), 1);
    let q = ListQuery {
        include_deleted: true,
        filters: vec![filter("last_modified", FilterOp::Gt, json!(0))],
        ..Default::default()
    };
    let all = tx.list_all("record", COLL, &q).unwrap();
    assert_eq!(sorted_ids(&all), vec!["a", "keep"]);
    let listed_tomb = all.iter().find(|o| o["id"] == json!("a")).unwrap();
    assert_eq!(listed_tomb, &tomb);
    // Other filters treat tombstones as objects lacking the field.
    let q_eq = ListQuery {
        filters: vec![filter("title", FilterOp::Eq, json!("y"))],
        ..q.clone()
    };
    assert_eq!(
        ids(&tx.list_all("record", COLL, &q_eq).unwrap()),
        vec!["keep"]
    );
    let q_not = ListQuery {
        filters: vec![filter("title", FilterOp::NotEq, json!("y"))],
        ..q
    };
    assert_eq!(
        ids(&tx.list_all("record", COLL, &q_not).unwrap()),
        vec!["a"]
    );
    // Revival: creating over a tombstone works and gives a fresh timestamp.
    let revived = tx
        .create(l, obj(json!({"id": "a", "title": "again"})))
        .unwrap()
        .unwrap();
    assert!(lm(&revived) > lm(&tomb));
    assert_eq!(tx.get(l, "a").unwrap().unwrap()["title"], json!("again"));
    // Delete without tombstone removes the row.
    let gone = tx.delete(l, "keep", false, None).unwrap().unwrap();
    assert_eq!(gone["deleted"], json!(true));
    let q_all = ListQuery {
        include_deleted: true,
        filters: vec![filter("last_modified", FilterOp::Min, json!(0))],
        ..Default::default()
    };
    assert_eq!(
        ids(&tx.list_all("record", COLL, &q_all).unwrap()),
        vec!["a"]
    );
    tx.commit().unwrap();
}

fn transactions_commit_and_rollback(db: &TestDb) {
    let backend = db.backend();
    let l = records(COLL);
    let mut tx = backend.begin().unwrap();
    tx.create(l, obj(json!({"id": "kept"}))).unwrap().unwrap();
    tx.add_principal_to_ace("/x", "read", "alice").unwrap();
    tx.commit().unwrap();
    let mut tx = backend.begin().unwrap();
    tx.create(l, obj(json!({"id": "rolled"}))).unwrap().unwrap();
    tx.add_principal_to_ace("/y", "read", "alice").unwrap();
    tx.rollback().unwrap();
    {
        let mut tx = backend.begin().unwrap();
        tx.create(l, obj(json!({"id": "dropped"})))
            .unwrap()
            .unwrap();
        // Dropped without commit.
    }
    let mut tx = backend.begin().unwrap();
    assert!(tx.get(l, "kept").unwrap().is_some());
    assert!(tx.get(l, "rolled").unwrap().is_none());
    assert!(tx.get(l, "dropped").unwrap().is_none());
    assert_eq!(
        tx.get_object_permission_principals("/x", "read").unwrap(),
        set(&["alice"])
    );
    assert!(tx
        .get_object_permission_principals("/y", "read")
        .unwrap()
        .is_empty());
    // The backend flush removes objects and permissions.
    drop(tx);
    backend.flush().unwrap();
    let mut tx = backend.begin().unwrap();
    assert!(tx.get(l, "kept").unwrap().is_none());
    assert!(tx
        .get_object_permission_principals("/x", "read")
        .unwrap()
        .is_empty());
}

fn bulk_delete_increasing_timestamps(db: &TestDb) {
    seed(
        db,
        COLL,
        &[
            ("c", json!({"n": 1})),
            ("a", json!({"n": 2})),
            ("b", json!({"n": 3})),
            ("d", json!({"n": 4})),
        ],
    );
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let before = tx.resource_timestamp(records(COLL)).unwrap();
    let q = ListQuery {
        filters: vec![filter("n", FilterOp::Max, json!(3))],
        sorting: vec![Sort {
            field: "id".into(),
            descending: false,
        }],
        ..Default::default()
    };
    let tombs = tx.delete_all("record", COLL, &q, true).unwrap();
    assert_eq!(ids(&tombs), vec!["a", "b", "c"], "page order");
    assert!(lm(&tombs[0]) > before);
    for pair in tombs.windows(2) {
        assert!(lm(&pair[1]) > lm(&pair[0]));
    }
    assert!(tombs.iter().all(|t| t["deleted"] == json!(true)));
    assert_eq!(tx.resource_timestamp(records(COLL)).unwrap(), lm(&tombs[2]));
    assert_eq!(
        ids(&tx.list_all("record", COLL, &ListQuery::default()).unwrap()),
        vec!["d"]
    );
    // A limit deletes only the first page.
    let more = seed_in(&mut *tx, &["e", "f", "g"]);
    assert_eq!(more, 3);
    let q = ListQuery {
        sorting: vec![Sort {
            field: "id".into(),
            descending: true,
        }],
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        ids(&tx.delete_all("record", COLL, &q, true).unwrap()),
        vec!["g", "f"]
    );
    // Purge: tombstones older than a timestamp, then all of them.
    let q_tombs = ListQuery {
        include_deleted: true,
        filters: vec![filter("deleted", FilterOp::Eq, json!(true))],
        ..Default::default()
    };
    assert_eq!(tx.list_all("record", COLL, &q_tombs).unwrap().len(), 5);
    assert_eq!(
        tx.purge_deleted("record", COLL, Some(lm(&tombs[2])))
            .unwrap(),
        2
    );
    assert_eq!(tx.list_all("record", COLL, &q_tombs).unwrap().len(), 3);
    assert_eq!(tx.purge_deleted("record", COLL, None).unwrap(), 3);
    assert!(tx.list_all("record", COLL, &q_tombs).unwrap().is_empty());
    tx.commit().unwrap();
}

/// `kinto purge-deleted RESOURCE... MAX_RETAINED`: each list keeps its most recent tombstones.
fn purge_keeps_the_most_recent_tombstones_per_list(db: &TestDb) {
    const OTHER: &str = "/buckets/b/collections/other";
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    for parent in [COLL, OTHER] {
        for id in ["a", "b", "c", "d"] {
            tx.create(records(parent), obj(json!({"id": id})))
                .unwrap()
                .unwrap();
            tx.delete(records(parent), id, true, None).unwrap().unwrap();
        }
    }
    tx.create(records(COLL), obj(json!({"id": "live"})))
        .unwrap()
        .unwrap();
    assert_eq!(
        tx.purge_deleted_retaining("record", "/buckets/b/collections/*", 1)
            .unwrap(),
        6
    );
    let q_tombs = ListQuery {
        include_deleted: true,
        filters: vec![filter("deleted", FilterOp::Eq, json!(true))],
        ..Default::default()
    };
    for parent in [COLL, OTHER] {
        assert_eq!(
            ids(&tx.list_all("record", parent, &q_tombs).unwrap()),
            vec!["d"]
        );
    }
    assert!(tx.get(records(COLL), "live").unwrap().is_some());
    assert_eq!(
        tx.purge_deleted_retaining("record", "/buckets/b/collections/*", 0)
            .unwrap(),
        2
    );
    tx.commit().unwrap();
}

fn seed_in(tx: &mut dyn kinto::storage::Transaction, new_ids: &[&str]) -> usize {
    new_ids
        .iter()
        .filter(|id| {
            tx.create(records(COLL), obj(json!({"id": id})))
                .unwrap()
                .is_ok()
        })
        .count()
}

fn cascade_deletes_with_wildcards(db: &TestDb) {
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let colls = |b: &'static str| ListRef {
        resource_name: "collection",
        parent_id: b,
    };
    for (bucket, cid) in [
        ("/buckets/b_1", "c1"),
        ("/buckets/b_1", "c2"),
        ("/buckets/bX1", "c1"),
        ("/buckets/b_10", "c1"),
    ] {
        tx.create(colls(bucket), obj(json!({"id": cid})))
            .unwrap()
            .unwrap();
        let parent = format!("{bucket}/collections/{cid}");
        for rid in ["r1", "r2"] {
            tx.create(records(&parent), obj(json!({"id": rid})))
                .unwrap()
                .unwrap();
        }
        tx.delete(records(&parent), "r2", true, None)
            .unwrap()
            .unwrap();
    }
    // Delete every child of bucket b_1 (all types, no tombstones), as a bucket deletion does.
    let removed = tx
        .delete_all("*", "/buckets/b_1/*", &ListQuery::default(), false)
        .unwrap();
    assert_eq!(removed.len(), 2, "two live records: {removed:?}");
    let removed = tx
        .delete_all("collection", "/buckets/b_1", &ListQuery::default(), false)
        .unwrap();
    assert_eq!(sorted_ids(&removed), vec!["c1", "c2"]);
    let everything = ListQuery {
        include_deleted: true,
        filters: vec![filter("last_modified", FilterOp::Min, json!(0))],
        ..Default::default()
    };
    assert!(tx
        .list_all("record", "/buckets/b_1/*", &everything)
        .unwrap()
        .is_empty());
    assert!(tx
        .list_all("collection", "/buckets/b_1", &everything)
        .unwrap()
        .is_empty());
    // `_` is not a wildcard and `b_1/` is not a prefix of `b_10/`.
    for other in [
        "/buckets/bX1/collections/c1",
        "/buckets/b_10/collections/c1",
    ] {
        assert_eq!(
            sorted_ids(&tx.list_all("record", other, &everything).unwrap()),
            vec!["r1", "r2"]
        );
    }
    let all_records = tx
        .list_all("record", "/buckets/*", &ListQuery::default())
        .unwrap();
    assert_eq!(all_records.len(), 2);
    // Recreated parents start empty.
    tx.create(colls("/buckets/b_1"), obj(json!({"id": "c1"})))
        .unwrap()
        .unwrap();
    assert!(tx
        .list_all("record", "/buckets/b_1/collections/c1", &everything)
        .unwrap()
        .is_empty());
    tx.commit().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Filters, sorting, pagination (3.8-3.10)

fn filter_dataset(db: &TestDb) {
    seed(
        db,
        COLL,
        &[
            (
                "a",
                json!({"n": 1, "title": "Alpha", "tags": ["x", "y"], "nested": {"v": 2}, "flag": true}),
            ),
            (
                "b",
                json!({"n": 2, "title": "beta", "tags": ["y"], "nested": {"v": 3}}),
            ),
            ("c", json!({"n": "2", "title": null, "tags": "x"})),
            ("d", json!({"n": 3.5, "title": 3, "tags": [{"k": 1}, "z"]})),
            ("e", json!({})),
        ],
    );
}

fn filters_follow_kinto_semantics(db: &TestDb) {
    filter_dataset(db);
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let b_ts = lm(&tx.get(records(COLL), "b").unwrap().unwrap());
    let cases: Vec<(Filter, Vec<&str>)> = vec![
        (filter("n", FilterOp::Eq, json!(2)), vec!["b"]),
        (filter("n", FilterOp::Eq, json!(2.0)), vec!["b"]),
        (filter("n", FilterOp::Eq, json!("2")), vec!["c"]),
        (
            filter("n", FilterOp::NotEq, json!(2)),
            vec!["a", "c", "d", "e"],
        ),
        // Strings sort before numbers; missing fields after everything.
        (filter("n", FilterOp::Lt, json!(2)), vec!["a", "c"]),
        (filter("n", FilterOp::Max, json!(2)), vec!["a", "b", "c"]),
        (filter("n", FilterOp::Gt, json!(2)), vec!["d", "e"]),
        (filter("n", FilterOp::Min, json!(2)), vec!["b", "d", "e"]),
        (filter("n", FilterOp::In, json!([1, 3.5])), vec!["a", "d"]),
        (
            filter("n", FilterOp::NotIn, json!([1, 3.5])),
            vec!["b", "c", "e"],
        ),
        (filter("title", FilterOp::Like, json!("al")), vec!["a"]),
        (filter("title", FilterOp::Like, json!("*TA")), vec!["b"]),
        (filter("title", FilterOp::Like, json!("b*")), vec!["b"]),
        (filter("title", FilterOp::Like, json!("3")), vec!["d"]),
        (filter("flag", FilterOp::Like, json!("t*")), vec!["a"]),
        (
            filter("title", FilterOp::Has, json!(true)),
            vec!["a", "b", "c", "d"],
        ),
        (filter("title", FilterOp::Has, json!(false)), vec!["e"]),
        (filter("title", FilterOp::Eq, json!(null)), vec!["c"]),
        (
            filter("tags", FilterOp::Contains, json!(["y"])),
            vec!["a", "b"],
        ),
        (filter("tags", FilterOp::Contains, json!("x")), vec!["a"]),
        (
            filter("tags", FilterOp::Contains, json!(["x", "y"])),
            vec!["a"],
        ),
        (
            filter("tags", FilterOp::Contains, json!([{"k": 1}])),
            vec!["d"],
        ),
        (
            filter("tags", FilterOp::ContainsAny, json!(["x", "z"])),
            vec!["a", "d"],
        ),
        (filter("tags", FilterOp::ContainsAny, json!(["q"])), vec![]),
        (filter("tags", FilterOp::Eq, json!(["y"])), vec!["b"]),
        (filter("nested.v", FilterOp::Eq, json!(3)), vec!["b"]),
        (filter("nested", FilterOp::Eq, json!({"v": 2})), vec!["a"]),
        (
            filter("nested.v", FilterOp::Gt, json!(2)),
            vec!["b", "c", "d", "e"],
        ),
        (filter("id", FilterOp::Eq, json!("a")), vec!["a"]),
        (
            filter("id", FilterOp::NotEq, json!("a")),
            vec!["b", "c", "d", "e"],
        ),
        (filter("id", FilterOp::Lt, json!("c")), vec!["a", "b"]),
        (
            filter("id", FilterOp::In, json!(["a", "c", "zz"])),
            vec!["a", "c"],
        ),
        (
            filter("id", FilterOp::NotIn, json!(["a", "c"])),
            vec!["b", "d", "e"],
        ),
        (filter("id", FilterOp::Like, json!("A")), vec!["a"]),
        (
            filter("last_modified", FilterOp::Gt, json!(b_ts)),
            vec!["c", "d", "e"],
        ),
        (
            filter("last_modified", FilterOp::Max, json!(b_ts)),
            vec!["a", "b"],
        ),
        (
            filter("last_modified", FilterOp::Eq, json!(b_ts)),
            vec!["b"],
        ),
        (
            filter("last_modified", FilterOp::In, json!([b_ts])),
            vec!["b"],
        ),
    ];
    for (f, expected) in cases {
        let q = ListQuery {
            filters: vec![f.clone()],
            ..Default::default()
        };
        let got = tx.list_all("record", COLL, &q).unwrap();
        assert_eq!(sorted_ids(&got), expected, "filter {f:?}");
        assert_eq!(
            tx.count_all("record", COLL, std::slice::from_ref(&f))
                .unwrap(),
            expected.len(),
            "{f:?}"
        );
    }
    // Several filters are ANDed.
    let both = vec![
        filter("n", FilterOp::Min, json!(1)),
        filter("tags", FilterOp::Contains, json!(["y"])),
    ];
    assert_eq!(tx.count_all("record", COLL, &both).unwrap(), 2);
}

fn sort_mixed_types_and_missing(db: &TestDb) {
    seed(
        db,
        COLL,
        &[
            ("p_t2", json!({"title": "t2"})),
            ("p_true", json!({"title": true})),
            ("p_absent", json!({})),
            ("p_t1", json!({"title": "t1"})),
            ("p_null", json!({"title": null})),
            ("p_3", json!({"title": 3})),
            ("p_arr", json!({"title": [1]})),
            ("p_obj", json!({"title": {"a": 1}})),
        ],
    );
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let by = |descending: bool| ListQuery {
        sorting: vec![
            Sort {
                field: "title".into(),
                descending,
            },
            Sort {
                field: "last_modified".into(),
                descending: true,
            },
        ],
        ..Default::default()
    };
    let asc = ids(&tx.list_all("record", COLL, &by(false)).unwrap());
    assert_eq!(
        asc,
        vec!["p_null", "p_t1", "p_t2", "p_3", "p_true", "p_arr", "p_obj", "p_absent"]
    );
    let mut desc = ids(&tx.list_all("record", COLL, &by(true)).unwrap());
    desc.reverse();
    assert_eq!(desc, asc);
    // Default order of the API: newest first.
    let newest = ListQuery {
        sorting: vec![Sort {
            field: "last_modified".into(),
            descending: true,
        }],
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        ids(&tx.list_all("record", COLL, &newest).unwrap()),
        vec!["p_obj", "p_arr"]
    );
}

/// Kinto's pagination rules from the last object of a page.
fn pagination_rules(sorting: &[Sort], last: &Object) -> Vec<Vec<Filter>> {
    let mut rules = Vec::new();
    for i in 0..sorting.len() {
        let mut rule = Vec::new();
        for (j, sort) in sorting[..=i].iter().enumerate() {
            let op = if j < i {
                FilterOp::Eq
            } else if sort.descending {
                FilterOp::Lt
            } else {
                FilterOp::Gt
            };
            rule.push(
                match kinto::storage::jsonb::lookup(&Value::Object(last.clone()), &sort.field) {
                    Some(v) => filter(&sort.field, op, v.clone()),
                    None => Filter::missing(&sort.field, op),
                },
            );
        }
        rules.push(rule);
    }
    rules
}

fn pagination_walks_every_object_once(db: &TestDb) {
    let values = [
        json!(5),
        json!(3),
        Value::Null,
        json!(3),
        json!(1),
        json!("s"),
        json!(null),
        json!(3),
    ];
    let items: Vec<(String, Value)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                format!("r{i}"),
                if v.is_null() && i == 2 {
                    json!({})
                } else {
                    json!({"n": v, "sub": {"k": i % 3}})
                },
            )
        })
        .collect();
    let mut items: Vec<(&str, Value)> =
        items.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    items.push(("r8", json!({"other": 1})));
    seed(db, COLL, &items);
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    for sorting in [
        vec![
            Sort {
                field: "n".into(),
                descending: false,
            },
            Sort {
                field: "last_modified".into(),
                descending: true,
            },
        ],
        vec![
            Sort {
                field: "n".into(),
                descending: true,
            },
            Sort {
                field: "last_modified".into(),
                descending: true,
            },
        ],
        vec![
            Sort {
                field: "sub.k".into(),
                descending: false,
            },
            Sort {
                field: "id".into(),
                descending: true,
            },
            Sort {
                field: "last_modified".into(),
                descending: true,
            },
        ],
    ] {
        let full = ids(&tx
            .list_all(
                "record",
                COLL,
                &ListQuery {
                    sorting: sorting.clone(),
                    ..Default::default()
                },
            )
            .unwrap());
        assert_eq!(full.len(), 9);
        for limit in [1, 2, 4] {
            let mut walked = Vec::new();
            let mut rules = Vec::new();
            loop {
                let q = ListQuery {
                    sorting: sorting.clone(),
                    pagination_rules: rules.clone(),
                    limit: Some(limit),
                    ..Default::default()
                };
                let page = tx.list_all("record", COLL, &q).unwrap();
                walked.extend(ids(&page));
                assert!(walked.len() <= full.len(), "pagination loops: {walked:?}");
                if page.len() < limit {
                    break;
                }
                rules = pagination_rules(&sorting, page.last().unwrap());
            }
            assert_eq!(walked, full, "sorting {sorting:?}, limit {limit}");
        }
    }
}

fn field_names_are_never_sql(db: &TestDb) {
    filter_dataset(db);
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let evil = [
        "title'); DROP TABLE objects; --",
        "a\" OR 1=1 --",
        "x' OR '1'='1",
        "n'::text) OR TRUE OR (data->>'n",
        "?",
        "$1",
    ];
    for field in evil {
        for op in [
            FilterOp::Eq,
            FilterOp::NotEq,
            FilterOp::Gt,
            FilterOp::Like,
            FilterOp::Has,
            FilterOp::Contains,
            FilterOp::In,
        ] {
            let value = if op == FilterOp::In {
                json!(["x' OR 1=1"])
            } else {
                json!("x' OR '1'='1")
            };
            let q = ListQuery {
                filters: vec![filter(field, op, value)],
                sorting: vec![Sort {
                    field: field.into(),
                    descending: false,
                }],
                ..Default::default()
            };
            let got = tx.list_all("record", COLL, &q).unwrap();
            let expected = if matches!(op, FilterOp::NotEq | FilterOp::Gt) {
                5
            } else {
                0
            };
            let expected = if op == FilterOp::Has { 0 } else { expected };
            assert_eq!(got.len(), expected, "{field} {op:?}");
        }
    }
    let weird_parent = "/buckets/b'; DROP TABLE objects; --/*";
    assert!(tx
        .list_all("record", weird_parent, &ListQuery::default())
        .unwrap()
        .is_empty());
    assert_eq!(
        tx.count_all("record", COLL, &[]).unwrap(),
        5,
        "table intact"
    );
}

// ---------------------------------------------------------------------------------------------
// Permissions (6)

fn permissions_principals_and_aces(db: &TestDb) {
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    tx.add_user_principal("account:alice", "/buckets/b/groups/g1")
        .unwrap();
    tx.add_user_principal("account:alice", "/buckets/b/groups/g1")
        .unwrap();
    tx.add_user_principal("account:bob", "/buckets/b/groups/g2")
        .unwrap();
    tx.add_user_principal("system.Authenticated", "/buckets/b/groups/all")
        .unwrap();
    assert_eq!(
        tx.get_user_principals("account:alice").unwrap(),
        set(&["/buckets/b/groups/g1", "/buckets/b/groups/all"])
    );
    tx.remove_user_principal("account:alice", "/buckets/b/groups/g1")
        .unwrap();
    assert_eq!(
        tx.get_user_principals("account:alice").unwrap(),
        set(&["/buckets/b/groups/all"])
    );
    tx.remove_principal("/buckets/b/groups/g2").unwrap();
    assert_eq!(
        tx.get_user_principals("account:bob").unwrap(),
        set(&["/buckets/b/groups/all"])
    );

    tx.add_principal_to_ace("/buckets/b", "write", "account:alice")
        .unwrap();
    tx.add_principal_to_ace("/buckets/b", "read", "system.Everyone")
        .unwrap();
    tx.add_principal_to_ace("/buckets/b/collections/c", "read", "account:bob")
        .unwrap();
    tx.add_principal_to_ace(
        "/buckets/b/collections/c/records/r",
        "write",
        "account:carol",
    )
    .unwrap();
    tx.add_principal_to_ace("/buckets/b_x", "write", "account:dave")
        .unwrap();
    tx.add_principal_to_ace("/buckets/bXx/collections/c", "read", "account:dave")
        .unwrap();
    assert_eq!(
        tx.get_object_permission_principals("/buckets/b", "write")
            .unwrap(),
        set(&["account:alice"])
    );
    tx.add_principal_to_ace("/buckets/b", "write", "account:zed")
        .unwrap();
    tx.remove_principal_from_ace("/buckets/b", "write", "account:zed")
        .unwrap();
    assert_eq!(
        tx.get_object_permission_principals("/buckets/b", "write")
            .unwrap(),
        set(&["account:alice"])
    );

    let perms = tx
        .get_objects_permissions(&[
            "/buckets/b/collections/c".into(),
            "/nothing".into(),
            "/buckets/b".into(),
        ])
        .unwrap();
    assert_eq!(perms.len(), 3);
    assert_eq!(perms[0]["read"], set(&["account:bob"]));
    assert!(perms[1].is_empty());
    assert_eq!(perms[2]["write"], set(&["account:alice"]));
    assert_eq!(perms[2]["read"], set(&["system.Everyone"]));

    // Replace: named permissions replaced, an empty set removes, others kept.
    let mut replacement = ObjectPermissions::new();
    replacement.insert("read".into(), BTreeSet::new());
    replacement.insert(
        "collection:create".into(),
        set(&["account:bob", "account:carol"]),
    );
    tx.replace_object_permissions("/buckets/b", &replacement)
        .unwrap();
    let now = tx
        .get_objects_permissions(&["/buckets/b".into()])
        .unwrap()
        .remove(0);
    assert_eq!(
        now.keys().cloned().collect::<Vec<_>>(),
        vec!["collection:create", "write"]
    );
    assert_eq!(
        now["collection:create"],
        set(&["account:bob", "account:carol"])
    );
    // Replacing with a set that keeps a principal keeps it.
    let mut keep = ObjectPermissions::new();
    keep.insert("write".into(), set(&["account:alice", "account:erin"]));
    tx.replace_object_permissions("/buckets/b", &keep).unwrap();
    assert_eq!(
        tx.get_object_permission_principals("/buckets/b", "write")
            .unwrap(),
        set(&["account:alice", "account:erin"])
    );
    keep.insert("write".into(), set(&["account:alice"]));
    tx.replace_object_permissions("/buckets/b", &keep).unwrap();
    assert_eq!(
        tx.get_object_permission_principals("/buckets/b", "write")
            .unwrap(),
        set(&["account:alice"])
    );

    // Checks and lookups.
    let bound = pairs(&[
        ("/buckets/b", "write"),
        ("/buckets/b/collections/c", "read"),
    ]);
    assert!(tx
        .check_permission(&set(&["account:bob", "system.Everyone"]), &bound)
        .unwrap());
    assert!(!tx
        .check_permission(&set(&["account:carol"]), &bound)
        .unwrap());
    assert!(!tx.check_permission(&BTreeSet::new(), &bound).unwrap());
    assert_eq!(
        tx.get_authorized_principals(&bound).unwrap(),
        set(&["account:alice", "account:bob"])
    );
    let accessible = tx
        .get_accessible_objects(
            &set(&["account:bob", "account:carol", "account:dave"]),
            &pairs(&[
                ("/buckets/b_x/collections/*", "read"),
                ("/buckets/b/collections/*", "read"),
                ("/buckets/*", "collection:create"),
            ]),
        )
        .unwrap();
    let mut expected = BTreeMap::new();
    expected.insert("/buckets/b".to_string(), set(&["collection:create"]));
    expected.insert("/buckets/b/collections/c".to_string(), set(&["read"]));
    assert_eq!(accessible, expected);
    let records_writable = tx
        .get_accessible_objects(
            &set(&["account:carol"]),
            &pairs(&[("/buckets/b/collections/c/records/*", "write")]),
        )
        .unwrap();
    assert_eq!(
        records_writable.keys().cloned().collect::<Vec<_>>(),
        vec!["/buckets/b/collections/c/records/r"]
    );

    // Wildcard deletion: the object and its descendants, `_` literal, no prefix overreach.
    tx.delete_object_permissions(&["/buckets/b_x".into(), "/buckets/b_x/*".into()])
        .unwrap();
    assert!(tx
        .get_object_permission_principals("/buckets/b_x", "write")
        .unwrap()
        .is_empty());
    assert_eq!(
        tx.get_object_permission_principals("/buckets/bXx/collections/c", "read")
            .unwrap(),
        set(&["account:dave"])
    );
    tx.delete_object_permissions(&["/buckets/b".into(), "/buckets/b/*".into()])
        .unwrap();
    let left = tx
        .get_objects_permissions(&[
            "/buckets/b".into(),
            "/buckets/b/collections/c".into(),
            "/buckets/b/collections/c/records/r".into(),
        ])
        .unwrap();
    assert!(left.iter().all(|p| p.is_empty()), "{left:?}");
    tx.commit().unwrap();
}

fn read_object_in_one_call(db: &TestDb) {
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let colls = ListRef {
        resource_name: "collection",
        parent_id: "/buckets/b",
    };
    tx.create(colls, obj(json!({"id": "c"}))).unwrap().unwrap();
    let rec = tx
        .create(records(COLL), obj(json!({"id": "r", "v": 1})))
        .unwrap()
        .unwrap();
    tx.add_principal_to_ace(
        "/buckets/b/collections/c",
        "read",
        "/buckets/b/groups/readers",
    )
    .unwrap();
    tx.add_principal_to_ace("/buckets/b/collections/c/records/r", "write", "account:bob")
        .unwrap();
    tx.add_user_principal("account:alice", "/buckets/b/groups/readers")
        .unwrap();
    tx.commit().unwrap();

    let bound = pairs(&[
        ("/buckets/b", "write"),
        ("/buckets/b", "read"),
        ("/buckets/b/collections/c", "write"),
        ("/buckets/b/collections/c", "read"),
        ("/buckets/b/collections/c/records/r", "write"),
        ("/buckets/b/collections/c/records/r", "read"),
    ]);
    let mut tx = backend.begin().unwrap();
    let user_ids = vec![
        "account:alice".to_string(),
        "system.Authenticated".to_string(),
    ];
    let principals = set(&["system.Everyone", "system.Authenticated", "account:alice"]);
    let parents = [
        (
            ListRef {
                resource_name: "bucket",
                parent_id: "",
            },
            "b",
        ),
        (colls, "c"),
    ];
    let req = ReadRequest {
        list: records(COLL),
        id: "r",
        object_uri: "/buckets/b/collections/c/records/r",
        user_ids: &user_ids,
        principals: &principals,
        bound_permissions: &bound,
        parents: &parents,
        lock: None,
    };
    let res = tx.read_object(&req).unwrap();
    assert_eq!(res.object.as_ref(), Some(&rec));
    assert!(res.allowed);
    assert!(res.principals.contains("/buckets/b/groups/readers"));
    assert_eq!(res.parents_exist, vec![false, true]);
    assert_eq!(res.permissions["write"], set(&["account:bob"]));
    assert_eq!(
        res,
        kinto::storage::read_object_by_parts(&mut *tx, &req).unwrap()
    );
    // A stranger is not allowed; a missing object is None.
    let nobody = set(&["system.Everyone"]);
    let missing = ReadRequest {
        id: "zz",
        object_uri: "/buckets/b/collections/c/records/zz",
        user_ids: &[],
        principals: &nobody,
        ..req
    };
    let res = tx.read_object(&missing).unwrap();
    assert!(!res.allowed);
    assert!(res.object.is_none());
    assert!(res.permissions.is_empty());
    assert_eq!(res.principals, nobody);
}

/// A replacing write decided on a read (`update_if`) happens only while the object is as read:
/// every write of an object moves its timestamp forward, so a stale read writes nothing.
fn update_if_writes_only_what_was_read(db: &TestDb) {
    let backend = db.backend();
    let write = |id: &str, v: i64, read: Option<i64>| {
        let mut tx = backend.begin().unwrap();
        let written = tx
            .update_if(records(COLL), id, obj(json!({"id": id, "v": v})), read)
            .unwrap();
        tx.commit().unwrap();
        written
    };
    let current = |id: &str| {
        db.query_text(&format!(
            "SELECT CAST(data->>'v' AS TEXT) FROM objects \
         WHERE id = '{id}' AND parent_id = '{COLL}' AND NOT deleted"
        ))
    };
    let first = write("r1", 1, None).expect("absent as read: created");
    let second = write("r1", 2, Some(lm(&first))).expect("as read: replaced");
    assert!(lm(&second) > lm(&first));
    assert_eq!(
        write("r1", 3, Some(lm(&first))),
        None,
        "read before the last write"
    );
    assert_eq!(write("r1", 4, None), None, "read absent, live since");
    assert_eq!(current("r1").as_deref(), Some("2"));
    assert_eq!(
        write("r2", 5, Some(lm(&second))),
        None,
        "read live, never there"
    );
    assert_eq!(current("r2"), None);
    let mut tx = backend.begin().unwrap();
    tx.delete(records(COLL), "r1", true, None).unwrap();
    tx.commit().unwrap();
    assert_eq!(
        write("r1", 6, Some(lm(&second))),
        None,
        "deleted since read"
    );
    assert_eq!(current("r1"), None);
    let revived = write("r1", 7, None).expect("a tombstone is absent: revived");
    assert!(lm(&revived) > lm(&second));
    assert_eq!(current("r1").as_deref(), Some("7"));
}

/// Writes nobody reads the answer of may travel with the next statement (PostgreSQL), and a
/// request's last write may carry the commit: neither changes what a transaction sees or keeps.
fn deferred_writes_and_the_commit_with_the_last_write(db: &TestDb) {
    let backend = db.backend();
    let uri = format!("{COLL}/records/a");
    let perms: ObjectPermissions = [("write".to_string(), set(&["alice"]))].into();
    let writers = |db: &TestDb| {
        db.query_text(&format!(
            "SELECT string_agg(principal, ',') FROM access_control_entries \
             WHERE object_id = '{uri}' AND permission = 'write'"
        ))
    };
    let mut tx = backend.begin().unwrap();
    tx.replace_object_permissions(&uri, &perms).unwrap();
    assert_eq!(
        tx.get_object_permission_principals(&uri, "write").unwrap(),
        set(&["alice"]),
        "read back in their transaction"
    );
    tx.rollback().unwrap();
    assert_eq!(writers(db), None, "gone with the rollback");
    let mut tx = backend.begin().unwrap();
    tx.replace_object_permissions(&uri, &perms).unwrap();
    tx.commit_with_next_write();
    let created = tx
        .create(records(COLL), obj(json!({"id": "a", "v": 1})))
        .unwrap()
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(writers(db).as_deref(), Some("alice"));
    let mut tx = backend.begin().unwrap();
    assert_eq!(tx.get(records(COLL), "a").unwrap(), Some(created.clone()));
    tx.rollback().unwrap();
    // A stale guarded write as the last one: nothing written, nothing left open.
    let mut tx = backend.begin().unwrap();
    tx.commit_with_next_write();
    let stale = tx
        .update_if(
            records(COLL),
            "a",
            obj(json!({"id": "a", "v": 2})),
            Some(lm(&created) - 1),
        )
        .unwrap();
    assert_eq!(stale, None);
    tx.rollback().unwrap();
    let mut tx = backend.begin().unwrap();
    assert_eq!(tx.get(records(COLL), "a").unwrap(), Some(created));
    tx.rollback().unwrap();
}

/// The read of a write request takes its list's lock first (on PostgreSQL in the same round
/// trip, its parameters then written as literals): the same answer as an ordinary read, for
/// principals and ids of any text, and the lock held until the transaction ends.
fn locked_read_object_answers_alike_and_holds_the_lock(db: &TestDb) {
    let backend = db.backend();
    let strange = [
        "account:o'neil",
        "a\\b \"c\", {d} NULL",
        "NULL",
        "$1 ' OR 1=1 --",
        "é ünïcode, 'quoted'",
    ];
    let mut tx = backend.begin().unwrap();
    tx.create(records(COLL), obj(json!({"id": "r'1", "v": "x"})))
        .unwrap()
        .unwrap();
    let uri = format!("{COLL}/records/r'1");
    for principal in strange {
        tx.add_principal_to_ace(&uri, "write", principal).unwrap();
        tx.add_user_principal(strange[0], principal).unwrap();
    }
    tx.commit().unwrap();
    let user_ids = vec![strange[0].to_string(), "system.Authenticated".to_string()];
    let principals = set(&["system.Everyone", strange[0], strange[1]]);
    let bound = vec![(uri.clone(), "write".to_string())];
    let colls = ListRef {
        resource_name: "collection",
        parent_id: "/buckets/b",
    };
    let parents = [(colls, "c'\\x")];
    let req = ReadRequest {
        list: records(COLL),
        id: "r'1",
        object_uri: &uri,
        user_ids: &user_ids,
        principals: &principals,
        bound_permissions: &bound,
        parents: &parents,
        lock: None,
    };
    let mut tx = backend.begin().unwrap();
    let plain = tx.read_object(&req).unwrap();
    tx.rollback().unwrap();
    assert!(plain.allowed);
    assert_eq!(plain.permissions["write"].len(), strange.len());
    assert!(strange.iter().all(|p| plain.principals.contains(*p)));
    let mut tx = backend.begin().unwrap();
    let locked = tx
        .read_object(&ReadRequest {
            lock: Some(records(COLL)),
            ..req
        })
        .unwrap();
    assert_eq!(locked, plain);
    // Another writer of the list waits for this transaction.
    let other = db.backend();
    let waiter = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut tx = other.begin().unwrap();
        tx.lock_list(records(COLL)).unwrap();
        tx.rollback().unwrap();
        started.elapsed()
    });
    std::thread::sleep(std::time::Duration::from_millis(400));
    tx.update(records(COLL), "r'1", obj(json!({"v": "y"})))
        .unwrap();
    tx.commit().unwrap();
    let waited = waiter.join().unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "{waited:?}"
    );
}

fn read_list_in_one_call(db: &TestDb) {
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let buckets = ListRef {
        resource_name: "bucket",
        parent_id: "",
    };
    let colls = ListRef {
        resource_name: "collection",
        parent_id: "/buckets/b",
    };
    tx.create(buckets, obj(json!({"id": "b"})))
        .unwrap()
        .unwrap();
    tx.create(colls, obj(json!({"id": "c"}))).unwrap().unwrap();
    tx.create(colls, obj(json!({"id": "empty"})))
        .unwrap()
        .unwrap();
    for (id, n) in [("r1", 1), ("r2", 2), ("r3", 3), ("r4", 4)] {
        tx.create(records(COLL), obj(json!({"id": id, "n": n})))
            .unwrap()
            .unwrap();
    }
    tx.delete(records(COLL), "r4", true, None).unwrap().unwrap();
    tx.add_principal_to_ace(
        "/buckets/b/collections/c",
        "read",
        "/buckets/b/groups/readers",
    )
    .unwrap();
    tx.add_principal_to_ace(
        "/buckets/b/collections/empty",
        "read",
        "/buckets/b/groups/readers",
    )
    .unwrap();
    tx.add_user_principal("account:alice", "/buckets/b/groups/readers")
        .unwrap();
    tx.commit().unwrap();

    let bound_for = |coll: &str| {
        pairs(&[("/buckets/b", "write"), ("/buckets/b", "read")])
            .into_iter()
            .chain([
                (coll.to_string(), "write".to_string()),
                (coll.to_string(), "read".to_string()),
            ])
            .collect::<Vec<_>>()
    };
    let user_ids = vec![
        "account:alice".to_string(),
        "system.Authenticated".to_string(),
    ];
    let alice = set(&["system.Everyone", "system.Authenticated", "account:alice"]);
    let query = ListQuery {
        filters: vec![filter("n", FilterOp::Min, json!(2))],
        sorting: vec![
            Sort {
                field: "n".into(),
                descending: false,
            },
            Sort {
                field: "last_modified".into(),
                descending: true,
            },
        ],
        limit: Some(1),
        ..Default::default()
    };
    let bound = bound_for("/buckets/b/collections/c");
    let parents = [(buckets, "b"), (colls, "c")];
    let req = kinto::storage::ListRequest {
        resource_name: "record",
        parent_id: COLL,
        query: &query,
        with_count: true,
        user_ids: &user_ids,
        principals: &alice,
        bound_permissions: &bound,
        parents: &parents,
    };
    let mut tx = backend.begin().unwrap();
    let res = tx.read_list(&req).unwrap();
    assert!(res.allowed);
    let exist = |res: &kinto::storage::ListResult| -> Vec<bool> {
        res.parents.iter().map(Option::is_some).collect()
    };
    assert_eq!(exist(&res), vec![true, true]);
    // The parents come whole (the collection's `cache_expires` is read from it).
    assert_eq!(res.parents[1], tx.get(colls, "c").unwrap());
    assert_eq!(ids(&page(&res)), vec!["r2"]);
    assert_eq!(res.count, Some(2));
    assert_eq!(
        res.timestamp,
        Some(tx.resource_timestamp(records(COLL)).unwrap())
    );
    assert_eq!(page(&res)[0], tx.get(records(COLL), "r2").unwrap().unwrap());
    assert_eq!(
        res,
        kinto::storage::read_list_by_parts(&mut *tx, &req).unwrap()
    );
    // Tombstones with include_deleted.
    let since = ListQuery {
        include_deleted: true,
        filters: vec![filter("last_modified", FilterOp::Gt, json!(0))],
        ..Default::default()
    };
    let res = tx
        .read_list(&kinto::storage::ListRequest {
            query: &since,
            with_count: false,
            ..req
        })
        .unwrap();
    assert_eq!(sorted_ids(&page(&res)), vec!["r1", "r2", "r3", "r4"]);
    assert_eq!(res.count, None);

    // A stranger: nothing computed.
    let nobody = set(&["system.Everyone"]);
    let denied = kinto::storage::ListRequest {
        user_ids: &[],
        principals: &nobody,
        ..req
    };
    let res = tx.read_list(&denied).unwrap();
    assert!(!res.allowed);
    assert!(res.objects.is_empty() && res.timestamp.is_none() && res.count.is_none());
    assert_eq!(res.principals, nobody);
    assert_eq!(
        res,
        kinto::storage::read_list_by_parts(&mut *tx, &denied).unwrap()
    );

    // A missing parent: no list timestamp is created for it.
    let ghost_bound = bound_for("/buckets/b/collections/ghost");
    let ghost_parents = [(buckets, "b"), (colls, "ghost")];
    let ghost = kinto::storage::ListRequest {
        parent_id: "/buckets/b/collections/ghost",
        bound_permissions: &ghost_bound,
        parents: &ghost_parents,
        ..req
    };
    tx.add_principal_to_ace("/buckets/b", "read", "account:alice")
        .unwrap();
    let res = tx.read_list(&ghost).unwrap();
    assert!(res.allowed);
    assert_eq!(exist(&res), vec![true, false]);
    assert!(res.timestamp.is_none() && res.objects.is_empty());
    let known: Vec<String> = tx
        .all_resources_timestamps("record")
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(known, vec![COLL.to_string()]);

    // An empty list gets a stable timestamp on first read.
    let empty_bound = bound_for("/buckets/b/collections/empty");
    let empty_parents = [(buckets, "b"), (colls, "empty")];
    let empty = kinto::storage::ListRequest {
        parent_id: "/buckets/b/collections/empty",
        bound_permissions: &empty_bound,
        parents: &empty_parents,
        ..req
    };
    let first = tx.read_list(&empty).unwrap();
    assert!(first.objects.is_empty());
    assert_eq!(first.count, Some(0));
    let ts = first.timestamp.expect("created");
    assert_eq!(tx.read_list(&empty).unwrap().timestamp, Some(ts));
    tx.commit().unwrap();

    // Read-only: a list never read cannot get a timestamp.
    let ro = db.backend_with(true);
    let mut tx = ro.begin().unwrap();
    let mut tx2 = backend.begin().unwrap();
    tx2.create(colls, obj(json!({"id": "later"})))
        .unwrap()
        .unwrap();
    tx2.commit().unwrap();
    let later_bound = bound_for("/buckets/b/collections/later");
    let later_parents = [(buckets, "b"), (colls, "later")];
    let later = kinto::storage::ListRequest {
        parent_id: "/buckets/b/collections/later",
        bound_permissions: &later_bound,
        parents: &later_parents,
        ..req
    };
    assert!(matches!(tx.read_list(&later), Err(BackendError::ReadOnly)));
}

// ---------------------------------------------------------------------------------------------
// Cache (11.2)

fn cache_values_and_ttl(db: &TestDb) {
    let cache = db.cache();
    assert!(cache.ping());
    assert_eq!(cache.get("k").unwrap(), None);
    cache.set("k", &json!({"a": [1, "x"]}), Some(60.0)).unwrap();
    assert_eq!(cache.get("k").unwrap(), Some(json!({"a": [1, "x"]})));
    let ttl = cache.ttl("k").unwrap();
    assert!((58..=60).contains(&ttl), "ttl {ttl}");
    cache.expire("k", 500.0).unwrap();
    assert!((498..=500).contains(&cache.ttl("k").unwrap()));
    cache.set("forever", &json!(""), None).unwrap();
    assert_eq!(cache.ttl("forever").unwrap(), -1);
    assert_eq!(cache.ttl("absent").unwrap(), -1);
    assert_eq!(cache.get("forever").unwrap(), Some(json!("")));
    // Overwrite, delete returns the value once.
    cache.set("k", &json!(2), Some(60.0)).unwrap();
    assert_eq!(cache.delete("k").unwrap(), Some(json!(2)));
    assert_eq!(cache.delete("k").unwrap(), None);
    // Expiry.
    cache.set("short", &json!(1), Some(0.3)).unwrap();
    wait_until("expiry", || cache.get("short").unwrap().is_none());
    assert_eq!(
        cache.delete("short").unwrap(),
        None,
        "expired values are not returned"
    );
    // Shared by instances (workers); separated by prefix.
    let other = db.cache();
    assert_eq!(other.get("forever").unwrap(), Some(json!("")));
    cache.flush().unwrap();
    assert_eq!(other.get("forever").unwrap(), None);
}

fn cache_writes_while_a_storage_transaction_writes(db: &TestDb) {
    // Storage and cache configured on the same database, as in a default setup.
    let cache: Box<dyn kinto::cache::Cache> = match db.kind() {
        BackendKind::Sqlite => Box::new(kinto::cache::sqlite::SqliteCache::beside(
            &db.settings,
            &db.settings,
            String::new(),
        )),
        BackendKind::PostgreSql => db.cache(),
    };
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    tx.create(records(COLL), obj(json!({"id": "a"})))
        .unwrap()
        .unwrap();
    let started = Instant::now();
    cache.set("nonce", &json!(""), Some(600.0)).unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the cache write did not wait"
    );
    assert_eq!(cache.delete("nonce").unwrap(), Some(json!("")));
    tx.commit().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Schema management

fn migrate_idempotent_dry_run_and_newer_refused(db: &TestDb) {
    let backend = db.backend();
    let first = backend.migrate(false).unwrap();
    let _ = first;
    backend.migrate(false).unwrap();
    seed(db, COLL, &[("a", json!({}))]);
    assert!(
        backend.migrate(true).unwrap().is_empty(),
        "nothing to do when up to date"
    );
    backend.migrate(false).unwrap();
    let mut tx = backend.begin().unwrap();
    assert!(
        tx.get(records(COLL), "a").unwrap().is_some(),
        "migrate keeps data"
    );
    drop(tx);
    db.execute_raw("INSERT INTO metadata (name, value) VALUES ('storage_schema_version', '99')");
    for dry_run in [false, true] {
        match backend.migrate(dry_run) {
            Err(BackendError::Unavailable(message)) => assert!(message.contains("99"), "{message}"),
            other => panic!("a newer schema must be refused, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency and availability

fn concurrent_writers_queue_without_conflicts(db: &TestDb) {
    let threads = 4;
    let per_thread = 15;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            // Each thread has its own backend, as a worker process would.
            let backend = db.backend();
            std::thread::spawn(move || {
                let mut stamps = Vec::new();
                for i in 0..per_thread {
                    let mut tx = backend.begin().unwrap();
                    let o = obj(json!({"id": format!("t{t}_{i}")}));
                    let created = tx.create(records(COLL), o).expect("no conflict").unwrap();
                    // Also update an object shared by every writer.
                    tx.update(records(COLL), "shared", obj(json!({"by": t})))
                        .expect("no conflict");
                    tx.commit().unwrap();
                    stamps.push(lm(&created));
                }
                stamps
            })
        })
        .collect();
    let mut all: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "timestamps unique within the list");
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    assert_eq!(
        tx.count_all("record", COLL, &[]).unwrap(),
        threads * per_thread + 1
    );
    let newest = tx.resource_timestamp(records(COLL)).unwrap();
    assert!(newest >= *all.last().unwrap());
}

fn unreachable_database_is_unavailable_then_recovers(db: &TestDb) {
    let settings = db.unreachable();
    let (backend, cache): (
        Box<dyn kinto::storage::Backend>,
        Box<dyn kinto::cache::Cache>,
    ) = match db.kind() {
        BackendKind::Sqlite => (
            Box::new(kinto::storage::sqlite::SqliteBackend::open(&settings, false).unwrap()),
            Box::new(kinto::cache::sqlite::SqliteCache::open(
                &settings,
                String::new(),
            )),
        ),
        BackendKind::PostgreSql => (
            Box::new(kinto::storage::postgresql::PgBackend::open(&settings, false).unwrap()),
            Box::new(kinto::cache::postgresql::PgCache::open(&settings, String::new()).unwrap()),
        ),
    };
    let started = Instant::now();
    let result = backend
        .begin()
        .and_then(|mut tx| tx.get(records(COLL), "a"));
    assert!(
        matches!(result, Err(BackendError::Unavailable(_))),
        "{result:?}"
    );
    // A refused connection answers at once, without waiting for the pool timeout.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(!backend.ping());
    assert!(!cache.ping());
    assert!(matches!(cache.get("k"), Err(BackendError::Unavailable(_))));
    assert!(matches!(
        backend.migrate(false),
        Err(BackendError::Unavailable(_))
    ));
}

fn exhausted_pool_is_unavailable(db: &TestDb) {
    let backend = db.backend_with_pool(1);
    let mut held = backend.begin().unwrap();
    held.get(records(COLL), "x").unwrap();
    let started = Instant::now();
    let second = std::thread::scope(|s| s.spawn(|| backend.begin().map(|_| ())).join().unwrap());
    assert!(
        matches!(second, Err(BackendError::Unavailable(_))),
        "{second:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the pool timeout"
    );
    drop(held);
    let mut tx = backend.begin().expect("the connection is back in the pool");
    assert!(tx.get(records(COLL), "x").unwrap().is_none());
}

fn pool_recovers_when_database_appears(db: &TestDb) {
    // A database that does not exist yet, then is created: the same backend starts working.
    let (settings, create): (_, Box<dyn Fn()>) = match db.kind() {
        BackendKind::Sqlite => {
            // A directory inside the test's own (removed at the end).
            let own = db.settings.url.strip_prefix("sqlite:///").unwrap();
            let dir = std::path::Path::new(own).parent().unwrap().join("late");
            let mut s = db.settings.clone();
            s.url = format!("sqlite:///{}", dir.join("late.db").display());
            let d = dir.clone();
            (s, Box::new(move || std::fs::create_dir_all(&d).unwrap()))
        }
        BackendKind::PostgreSql => {
            let name = format!(
                "kinto_test_{}_late_{}",
                std::process::id(),
                Instant::now().elapsed().as_nanos() % 1_000_000
            );
            let mut s = db.settings.clone();
            let base = s.url.rsplit_once('/').unwrap().0.to_string();
            s.url = format!("{base}/{name}");
            let admin = common::admin_url();
            (
                s,
                Box::new(move || {
                    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
                    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
                }),
            )
        }
    };
    let settings = kinto::settings::BackendSettings {
        pool_timeout: 2,
        ..settings
    };
    let backend: Box<dyn kinto::storage::Backend> = match db.kind() {
        BackendKind::Sqlite => {
            Box::new(kinto::storage::sqlite::SqliteBackend::open(&settings, false).unwrap())
        }
        BackendKind::PostgreSql => {
            Box::new(kinto::storage::postgresql::PgBackend::open(&settings, false).unwrap())
        }
    };
    assert!(!backend.ping());
    assert!(matches!(
        backend
            .begin()
            .and_then(|mut tx| tx.get(records(COLL), "a")),
        Err(BackendError::Unavailable(_))
    ));
    create();
    backend.migrate(false).unwrap();
    assert!(backend.ping());
    let mut tx = backend.begin().unwrap();
    tx.create(records(COLL), obj(json!({"id": "a"})))
        .unwrap()
        .unwrap();
    tx.commit().unwrap();
    drop(backend);
    if db.kind() == BackendKind::PostgreSql {
        let name = settings.url.rsplit_once('/').unwrap().1.to_string();
        let mut c = postgres::Client::connect(&common::admin_url(), postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
    }
}

/// Set in child processes of `concurrent_writer_processes`: the database URL to write into.
const WRITER_ENV: &str = "KINTO_TEST_WRITER_URL";
const WRITES_PER_PROCESS: usize = 20;

/// Runs one check on a fresh database, or, in a child process, the writer role.
fn run(make: fn() -> TestDb, check: fn(&TestDb)) {
    if let Ok(url) = std::env::var(WRITER_ENV) {
        return writer_process(&url);
    }
    let db = make();
    check(&db);
}

/// The child role: one worker process writing into the shared list.
fn writer_process(url: &str) {
    let kind = if url.starts_with("sqlite") {
        BackendKind::Sqlite
    } else {
        BackendKind::PostgreSql
    };
    let settings = kinto::settings::BackendSettings {
        kind,
        url: url.into(),
        pool_size: 2,
        pool_timeout: 10,
    };
    let backend: Box<dyn kinto::storage::Backend> = match kind {
        BackendKind::Sqlite => {
            Box::new(kinto::storage::sqlite::SqliteBackend::open(&settings, false).unwrap())
        }
        BackendKind::PostgreSql => {
            Box::new(kinto::storage::postgresql::PgBackend::open(&settings, false).unwrap())
        }
    };
    let tag = std::process::id();
    for i in 0..WRITES_PER_PROCESS {
        let mut tx = backend.begin().unwrap();
        let o = obj(json!({"id": format!("p{tag}_{i}")}));
        tx.create(records(COLL), o).expect("no conflict").unwrap();
        tx.commit().unwrap();
    }
}

fn concurrent_writer_processes(db: &TestDb) {
    let module = match db.kind() {
        BackendKind::Sqlite => "sqlite",
        BackendKind::PostgreSql => "postgresql",
    };
    let exe = std::env::current_exe().unwrap();
    let processes = 3;
    let mut children: Vec<std::process::Child> = (0..processes)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    &format!("{module}::concurrent_writer_processes"),
                    "--test-threads",
                    "1",
                    "-q",
                ])
                .env(WRITER_ENV, &db.settings.url)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn a writer process")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(18);
    for child in &mut children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "a writer process failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("writer process {} timed out", child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let backend = db.backend();
    let mut tx = backend.begin().unwrap();
    let q = ListQuery {
        sorting: vec![Sort {
            field: "last_modified".into(),
            descending: false,
        }],
        ..Default::default()
    };
    let all = tx.list_all("record", COLL, &q).unwrap();
    assert_eq!(all.len(), processes * WRITES_PER_PROCESS);
    for pair in all.windows(2) {
        assert!(lm(&pair[1]) > lm(&pair[0]), "unique increasing timestamps");
    }
}

fn cache_migrate_creates_table(db: &TestDb) {
    let cache = db.cache();
    cache.migrate(false).unwrap();
    cache.set("x", &json!(1), Some(10.0)).unwrap();
    let again = cache.migrate(true).unwrap();
    if db.kind() == BackendKind::PostgreSql {
        assert!(again.is_empty(), "the table exists");
    }
    assert_eq!(cache.get("x").unwrap(), Some(json!(1)));
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $check() { super::run(super::TestDb::sqlite, super::$check) } )*
        }
        mod postgresql {
            $( #[test] fn $check() { super::run(super::TestDb::postgresql, super::$check) } )*
        }
    };
}

conformance!(
    timestamps_strictly_increasing,
    list_timestamp_created_on_first_read,
    all_resources_timestamps_per_parent,
    replication_hints,
    create_get_update_conflict,
    tombstones_and_revival,
    transactions_commit_and_rollback,
    bulk_delete_increasing_timestamps,
    cascade_deletes_with_wildcards,
    filters_follow_kinto_semantics,
    sort_mixed_types_and_missing,
    pagination_walks_every_object_once,
    field_names_are_never_sql,
    permissions_principals_and_aces,
    read_object_in_one_call,
    locked_read_object_answers_alike_and_holds_the_lock,
    read_list_in_one_call,
    cache_values_and_ttl,
    cache_writes_while_a_storage_transaction_writes,
    migrate_idempotent_dry_run_and_newer_refused,
    concurrent_writers_queue_without_conflicts,
    unreachable_database_is_unavailable_then_recovers,
    pool_recovers_when_database_appears,
    exhausted_pool_is_unavailable,
    concurrent_writer_processes,
    cache_migrate_creates_table,
    purge_keeps_the_most_recent_tombstones_per_list,
    update_if_writes_only_what_was_read,
    deferred_writes_and_the_commit_with_the_last_write,
);

/// PostgreSQL only: a request's last write carries the commit, unless it waits for a lock.
mod postgresql_commit {
    use super::*;

    fn count(db: &TestDb, id: &str) -> Option<String> {
        db.query_text(&format!(
            "SELECT count(*)::text FROM objects WHERE id = '{id}'"
        ))
    }

    #[test]
    fn the_last_write_carries_the_commit() {
        let db = TestDb::postgresql();
        let backend = db.backend();
        let mut tx = backend.begin().unwrap();
        tx.commit_with_next_write();
        tx.create(records(COLL), obj(json!({"id": "w"})))
            .unwrap()
            .unwrap();
        assert_eq!(
            count(&db, "w").as_deref(),
            Some("1"),
            "committed with the write"
        );
        assert!(
            matches!(
                tx.get(records(COLL), "w"),
                Err(BackendError::Unavailable(_))
            ),
            "nothing may follow the commit"
        );
        tx.commit().unwrap();
    }

    #[test]
    fn deferred_writes_never_sent_cost_no_round_trip() {
        use kinto::storage::postgresql::round_trips;
        let db = TestDb::postgresql();
        let backend = db.backend();
        let uri = format!("{COLL}/records/a");
        let perms: ObjectPermissions = [("read".to_string(), set(&["bob"]))].into();
        for attempt in 0..2 {
            let mut tx = backend.begin().unwrap();
            let before = round_trips();
            tx.replace_object_permissions(&uri, &perms).unwrap();
            tx.rollback().unwrap();
            // The first one prepares the statement on the connection.
            if attempt == 1 {
                assert_eq!(
                    round_trips() - before,
                    0,
                    "nothing sent, nothing to roll back"
                );
            }
        }
        let mut tx = backend.begin().unwrap();
        assert!(tx
            .get_object_permission_principals(&uri, "read")
            .unwrap()
            .is_empty());
        tx.rollback().unwrap();
    }

    #[test]
    fn a_last_write_waiting_for_a_lock_leaves_the_commit_to_follow() {
        // A write sent with its commit would land even if harakiri killed its worker while it
        // waits: past a short wait it is sent again without the commit.
        let db = TestDb::postgresql();
        let holder = db.backend();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let hold = std::thread::spawn(move || {
            let mut tx = holder.begin().unwrap();
            tx.lock_list(records(COLL)).unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            tx.rollback().unwrap();
        });
        locked_rx.recv().unwrap();
        let backend = db.backend();
        let started = Instant::now();
        let mut tx = backend.begin().unwrap();
        tx.commit_with_next_write();
        tx.create(records(COLL), obj(json!({"id": "w"})))
            .unwrap()
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(count(&db, "w").as_deref(), Some("0"), "not committed yet");
        tx.commit().unwrap();
        assert_eq!(count(&db, "w").as_deref(), Some("1"));
        hold.join().unwrap();
    }
}

/// PostgreSQL only: the schema shared with Kinto and its migrations.
mod postgresql_schema {
    use super::*;

    fn version(db: &TestDb, name: &str) -> String {
        db.query_text(&format!(
            "SELECT max(value::int)::text FROM metadata WHERE name = '{name}'"
        ))
        .unwrap()
    }

    #[test]
    fn filtered_lists_have_a_list_scoped_filter_index() {
        // An equality filter of a list is one key of the GIN index of the data under its list's
        // key: the matching objects of that list, whatever other lists hold (bench/, S5).
        let db = TestDb::postgresql_empty();
        // Indexes of earlier kinto-rs versions, replaced.
        db.backend().migrate(false).unwrap();
        let mut admin = postgres::Client::connect(&db.settings.url, postgres::NoTls).unwrap();
        admin
            .batch_execute(
                "DROP INDEX idx_objects_data_by_list; \
                 CREATE INDEX idx_objects_data_jsonb_path_ops ON objects \
                   USING gin (data jsonb_path_ops)",
            )
            .unwrap();
        db.backend().migrate(false).unwrap();
        assert_eq!(
            db.query_text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_objects_data_by_list'"
            )
            .as_deref(),
            Some(
                "CREATE INDEX idx_objects_data_by_list ON public.objects USING gin \
                 (jsonb_set('{}'::jsonb, ARRAY[((parent_id || ' '::text) || resource_name)], \
                 data) jsonb_path_ops)"
            )
        );
        assert_eq!(
            db.query_text("SELECT to_regclass('idx_objects_data_jsonb_path_ops')::text"),
            None,
            "the unscoped index of earlier versions is replaced"
        );
        let mut client = postgres::Client::connect(&db.settings.url, postgres::NoTls).unwrap();
        client
            .batch_execute(
                "INSERT INTO objects (id, parent_id, resource_name, data, last_modified, deleted) \
                 SELECT 'r' || i, CASE WHEN i % 10 = 0 THEN '/buckets/b/collections/small' \
                   ELSE '/buckets/b/collections/big' END, 'record', \
                   jsonb_build_object('i', i, 'n', i % 1000, 'pad', repeat('x', 200)), \
                   TIMESTAMP '2026-01-01' + i * INTERVAL '1 millisecond', FALSE \
                 FROM generate_series(1, 20000) AS i",
            )
            .unwrap();
        // Separately: a multi-statement string runs as one transaction, VACUUM cannot.
        client.batch_execute("VACUUM ANALYZE objects").unwrap();
        // The condition as the backend writes it, through the backend (its generic plans).
        let backend = db.backend();
        let mut tx = backend.begin().unwrap();
        let small = "/buckets/b/collections/small";
        let q = ListQuery {
            filters: vec![filter("n", FilterOp::Eq, json!(10))],
            ..Default::default()
        };
        let mut expected: Vec<String> = (0..20).map(|k| format!("r{}", 10 + 1000 * k)).collect();
        expected.sort();
        for _ in 0..8 {
            let found = tx.list_all("record", small, &q).unwrap();
            assert_eq!(sorted_ids(&found), expected);
        }
        tx.rollback().unwrap();
        // The shape of the backend's query (see `pg_query::scope_for`), in the generic plan
        // its sessions end up with: the filter index alone, not intersected with the list's.
        client
            .batch_execute(
                "SET plan_cache_mode = force_generic_plan; \
                 PREPARE filtered (text, text, bigint) AS SELECT id FROM objects \
                 WHERE parent_id || ' ' || resource_name = $1 AND NOT deleted \
                   AND jsonb_set('{}'::jsonb, ARRAY[parent_id || ' ' || resource_name], data) \
                     @> $2::text::jsonb \
                 ORDER BY last_modified DESC LIMIT $3",
            )
            .unwrap();
        let plan: Vec<String> = client
            .query(
                "EXPLAIN EXECUTE filtered('/buckets/b/collections/small record', \
                   '{\"/buckets/b/collections/small record\": {\"n\": 10}}', 21)",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Bitmap Index Scan on idx_objects_data_by_list"),
            "{plan}"
        );
        assert_eq!(plan.matches("Index Scan").count(), 1, "{plan}");
    }

    #[test]
    fn dry_run_on_empty_database_changes_nothing() {
        let db = TestDb::postgresql_empty();
        let backend = db.backend();
        let scripts = backend.migrate(true).unwrap();
        assert_eq!(
            scripts.len(),
            4,
            "storage, permission, cache, kinto-rs indexes"
        );
        assert!(scripts[3].contains("CREATE INDEX IF NOT EXISTS idx_objects_data_by_list"));
        assert!(scripts[0].contains("CREATE TABLE IF NOT EXISTS objects"));
        assert!(scripts[0].contains("tgr_objects_last_modified"));
        assert_eq!(db.query_text("SELECT to_regclass('objects')::text"), None);
        assert_eq!(backend.migrate(false).unwrap(), scripts);
        assert_eq!(version(&db, "storage_schema_version"), "26");
        assert_eq!(version(&db, "permission_schema_version"), "2");
        assert!(backend.migrate(false).unwrap().is_empty(), "idempotent");
        assert!(backend.migrate(true).unwrap().is_empty());
    }

    #[test]
    fn upgrades_older_kinto_schemas() {
        let db = TestDb::postgresql();
        seed(&db, COLL, &[("a", json!({"v": 1}))]);
        // Back to storage 24 and permission 1, as an older Kinto left them.
        db.execute_raw(
            "DROP INDEX idx_objects_parent_id_record_last_modified; \
             DELETE FROM metadata WHERE name IN ('storage_schema_version', 'permission_schema_version'); \
             INSERT INTO metadata (name, value) VALUES ('storage_schema_version', '23'), \
               ('storage_schema_version', '24'), ('permission_schema_version', '1');",
        );
        let backend = db.backend();
        let planned = backend.migrate(true).unwrap();
        assert_eq!(planned.len(), 3, "24->25, 25->26, permission 1->2");
        assert_eq!(
            version(&db, "storage_schema_version"),
            "24",
            "dry run changes nothing"
        );
        assert_eq!(backend.migrate(false).unwrap(), planned);
        assert_eq!(version(&db, "storage_schema_version"), "26");
        assert_eq!(version(&db, "permission_schema_version"), "2");
        assert_eq!(
            db.query_text("SELECT to_regclass('idx_objects_parent_id_record_last_modified')::text"),
            Some("idx_objects_parent_id_record_last_modified".into())
        );
        assert!(backend.migrate(false).unwrap().is_empty());
        let mut tx = backend.begin().unwrap();
        assert_eq!(tx.get(records(COLL), "a").unwrap().unwrap()["v"], json!(1));
        drop(tx);
        // Versions older than the migrations we know are refused with a clear message.
        db.execute_raw(
            "DELETE FROM metadata WHERE name = 'storage_schema_version'; \
             INSERT INTO metadata (name, value) VALUES ('storage_schema_version', '12');",
        );
        match backend.migrate(false) {
            Err(BackendError::Unavailable(m)) => {
                assert!(m.contains("12") && m.contains("too old"), "{m}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn rows_are_shared_with_kinto() {
        let db = TestDb::postgresql();
        let ours = seed(&db, COLL, &[("ours", json!({"v": 1}))]);
        // Kinto's own insert: last_modified NULL, the trigger assigns it.
        db.execute_raw(
            "INSERT INTO objects (id, parent_id, resource_name, data, last_modified, deleted) \
             VALUES ('theirs', '/buckets/b/collections/c', 'record', '{\"v\": 2}', NULL, FALSE)",
        );
        let backend = db.backend();
        let mut tx = backend.begin().unwrap();
        let theirs = tx.get(records(COLL), "theirs").unwrap().unwrap();
        assert_eq!(theirs["v"], json!(2));
        assert!(lm(&theirs) > lm(&ours[0]));
        let next = tx
            .create(records(COLL), obj(json!({"id": "next"})))
            .unwrap()
            .unwrap();
        assert!(lm(&next) > lm(&theirs));
        tx.commit().unwrap();
        // Our rows are Kinto rows: data without id/last_modified, epoch via Kinto's as_epoch().
        assert_eq!(
            db.query_text("SELECT data::text FROM objects WHERE id = 'ours'"),
            Some("{\"v\": 1}".into())
        );
        assert_eq!(
            db.query_text("SELECT as_epoch(last_modified)::text FROM objects WHERE id = 'next'"),
            Some(lm(&next).to_string())
        );
        assert_eq!(
            db.query_text("SELECT data::text FROM objects WHERE id = 'ours' AND deleted"),
            None
        );
        let mut tx = backend.begin().unwrap();
        tx.delete(records(COLL), "ours", true, None)
            .unwrap()
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(
            db.query_text("SELECT data::text FROM objects WHERE id = 'ours' AND deleted"),
            Some("{\"deleted\": true}".into())
        );
        assert_eq!(db.query_text("SELECT sec2ttl(NULL)::text"), None);
    }
}

/// SQLite and PostgreSQL give the same answers on a varied dataset (filters and sorting).
mod backends_agree {
    use super::*;

    fn dataset() -> Vec<(String, Value)> {
        let mut seed: u64 = 42;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let scalars = [
            json!(null),
            json!(-2),
            json!(0),
            json!(1),
            json!(1.5),
            json!(3),
            json!(""),
            json!("a"),
            json!("ab"),
            json!("B"),
            json!("b"),
            json!("é"),
            json!("1"),
            json!(true),
            json!(false),
        ];
        (0..60)
            .map(|i| {
                let mut o = Map::new();
                for field in ["n", "s"] {
                    let pick = next(scalars.len() as u64 + 3) as usize;
                    if pick < scalars.len() {
                        o.insert(field.into(), scalars[pick].clone());
                    } else if pick == scalars.len() {
                        o.insert(field.into(), json!([scalars[next(15) as usize].clone()]));
                    } else if pick == scalars.len() + 1 {
                        o.insert(field.into(), json!({"v": next(3)}));
                    }
                }
                match next(4) {
                    0 => {}
                    1 => {
                        o.insert("tags".into(), json!("a"));
                    }
                    _ => {
                        let tags: Vec<Value> = (0..next(3))
                            .map(|_| scalars[next(15) as usize].clone())
                            .collect();
                        o.insert("tags".into(), Value::Array(tags));
                    }
                }
                if next(3) > 0 {
                    o.insert("o".into(), json!({"v": scalars[next(15) as usize].clone()}));
                }
                (format!("r{i:02}"), Value::Object(o))
            })
            .collect()
    }

    use serde_json::Map;

    #[test]
    fn filters_and_sorting() {
        let data = dataset();
        let items: Vec<(&str, Value)> = data.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let dbs = [TestDb::sqlite(), TestDb::postgresql()];
        for db in &dbs {
            seed(db, COLL, &items);
        }
        let backends: Vec<_> = dbs.iter().map(|db| db.backend()).collect();
        let mut txs: Vec<_> = backends.iter().map(|b| b.begin().unwrap()).collect();
        let values = [
            json!(null),
            json!(0),
            json!(1),
            json!(1.5),
            json!("a"),
            json!("B"),
            json!(true),
            json!(["a"]),
            json!({"v": 1}),
        ];
        let mut queries = Vec::new();
        for field in ["n", "s", "tags", "o.v", "o", "id", "missing.deep"] {
            for op in [
                FilterOp::Eq,
                FilterOp::NotEq,
                FilterOp::Lt,
                FilterOp::Gt,
                FilterOp::Min,
                FilterOp::Max,
            ] {
                for v in &values {
                    queries.push(vec![filter(field, op, v.clone())]);
                }
            }
            queries.push(vec![filter(
                field,
                FilterOp::In,
                json!([1, "a", null, true]),
            )]);
            queries.push(vec![filter(
                field,
                FilterOp::NotIn,
                json!([1, "a", null, true]),
            )]);
            queries.push(vec![filter(field, FilterOp::Has, json!(true))]);
            queries.push(vec![filter(field, FilterOp::Has, json!(false))]);
            for pattern in ["a", "*b", "B*", "é", "1", "*", "t*"] {
                queries.push(vec![filter(field, FilterOp::Like, json!(pattern))]);
            }
            for wanted in [json!(["a"]), json!("a"), json!([1, "b"]), json!([null])] {
                queries.push(vec![filter(field, FilterOp::Contains, wanted.clone())]);
                queries.push(vec![filter(field, FilterOp::ContainsAny, wanted)]);
            }
        }
        for filters in queries {
            let q = ListQuery {
                filters: filters.clone(),
                ..Default::default()
            };
            let answers: Vec<Vec<String>> = txs
                .iter_mut()
                .map(|tx| sorted_ids(&tx.list_all("record", COLL, &q).unwrap()))
                .collect();
            assert_eq!(answers[0], answers[1], "filters {filters:?}");
        }
        for field in ["n", "s", "tags", "o.v", "o", "id"] {
            for descending in [false, true] {
                let q = ListQuery {
                    sorting: vec![
                        Sort {
                            field: field.into(),
                            descending,
                        },
                        Sort {
                            field: "last_modified".into(),
                            descending: true,
                        },
                    ],
                    ..Default::default()
                };
                let answers: Vec<Vec<String>> = txs
                    .iter_mut()
                    .map(|tx| ids(&tx.list_all("record", COLL, &q).unwrap()))
                    .collect();
                assert_eq!(
                    answers[0], answers[1],
                    "sort {field} descending={descending}"
                );
            }
        }
    }
}
