//! Tests of the hub: fan-out, numbering, snapshots, recovery with `since`, conflation.

use tokio_util::sync::CancellationToken;

use super::*;

fn queue(capacity: usize) -> Arc<ClientQueue> {
    Arc::new(ClientQueue::new(capacity, CancellationToken::new()))
}

fn drain(q: &ClientQueue) -> Vec<serde_json::Value> {
    q.pop_batch(usize::MAX)
        .into_iter()
        .map(|m| serde_json::from_str(m.as_str()).expect("json"))
        .collect()
}

/// Publish `data` as message `seq` of epoch `e` on `channel`.
fn publish(hub: &Hub, kind: ChannelKind, channel: &str, seq: u64, data: &str) -> Published {
    publish_state(hub, kind, channel, seq, data, None)
}

fn publish_state(
    hub: &Hub,
    kind: ChannelKind,
    channel: &str,
    seq: u64,
    data: &str,
    state: Option<&str>,
) -> Published {
    hub.publish(Publication {
        kind,
        channel: &Arc::from(channel),
        epoch: &Arc::from("e"),
        seq,
        data,
        state: state.map(str::to_owned),
        item: None,
    })
}

fn since(seq: u64) -> Since {
    Since {
        epoch: "e".to_owned(),
        seq,
    }
}

#[test]
fn fans_out_shared_bytes_with_the_given_seq_and_epoch() {
    let hub = Hub::new();
    let (a, b) = (queue(8), queue(8));
    hub.subscribe(1, &a, ChannelKind::Ticks, "ticks.X", None, None);
    hub.subscribe(2, &b, ChannelKind::Ticks, "ticks.X", None, None);
    drain(&a);
    drain(&b);
    let p1 = publish(&hub, ChannelKind::Ticks, "ticks.X", 5, r#"{"ltp":1}"#);
    let p2 = publish(&hub, ChannelKind::Ticks, "ticks.X", 9, r#"{"ltp":2}"#);
    assert_eq!((p1.delivered, p2.delivered), (2, 2));
    // The same allocation reaches every subscriber.
    let got_a = a.pop_batch(8);
    let got_b = b.pop_batch(8);
    assert_eq!(got_a[0].as_ptr(), got_b[0].as_ptr());
    let v: serde_json::Value = serde_json::from_str(got_a[1].as_str()).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"type":"tick","channel":"ticks.X","epoch":"e","seq":9,"data":{"ltp":2}})
    );
}

#[test]
fn repeats_are_dropped() {
    let hub = Hub::new();
    let q = queue(8);
    hub.subscribe(1, &q, ChannelKind::Ticks, "ticks.X", None, None);
    publish(&hub, ChannelKind::Ticks, "ticks.X", 5, "{}");
    let repeat = publish(&hub, ChannelKind::Ticks, "ticks.X", 5, "{}");
    assert!(repeat.message.is_none());
    assert_eq!(drain(&q).len(), 2);
}

#[test]
fn subscriber_gets_subscribed_then_latest_bar() {
    let hub = Hub::new();
    publish(&hub, ChannelKind::Bars, "bars.X", 1, r#"{"close":1}"#);
    publish(&hub, ChannelKind::Bars, "bars.X", 2, r#"{"close":2}"#);
    let q = queue(8);
    hub.subscribe(7, &q, ChannelKind::Bars, "bars.X", None, None);
    assert_eq!(
        drain(&q),
        vec![
            serde_json::json!({"type":"subscribed","channel":"bars.X","epoch":"e","seq":2}),
            serde_json::json!({"type":"bar","channel":"bars.X","epoch":"e","seq":2,"data":{"close":2}}),
        ]
    );
}

#[test]
fn since_within_the_history_gets_exactly_the_missed_messages() {
    let hub = Hub::new();
    for seq in 1..=5 {
        publish(
            &hub,
            ChannelKind::Ticks,
            "ticks.X",
            seq * 10,
            &format!("{seq}"),
        );
    }
    let q = queue(16);
    hub.subscribe(1, &q, ChannelKind::Ticks, "ticks.X", Some(&since(30)), None);
    let got = drain(&q);
    assert_eq!(got[0]["recovered"], true);
    let seqs: Vec<_> = got[1..].iter().map(|m| m["seq"].clone()).collect();
    assert_eq!(seqs, vec![serde_json::json!(40), serde_json::json!(50)]);
    // Live messages continue after them.
    publish(&hub, ChannelKind::Ticks, "ticks.X", 60, "6");
    assert_eq!(drain(&q)[0]["seq"], 60);
}

#[test]
fn since_beyond_the_history_or_of_another_epoch_gets_the_snapshot() {
    // Room for about two messages.
    let hub = Hub::with_history(200);
    for seq in 1..=5 {
        publish_state(
            &hub,
            ChannelKind::Chain,
            "chain.N.2026-12-29",
            seq,
            "{}",
            Some(&format!(r#"{{"n":{seq}}}"#)),
        );
    }
    let q = queue(16);
    hub.subscribe(
        1,
        &q,
        ChannelKind::Chain,
        "chain.N.2026-12-29",
        Some(&since(1)),
        None,
    );
    let got = drain(&q);
    assert_eq!(got[0]["recovered"], false);
    assert_eq!(got[1]["snapshot"], true);
    assert_eq!(got[1]["data"]["n"], 5);
    assert_eq!(got.len(), 2);

    let other = Since {
        epoch: "elsewhere".to_owned(),
        seq: 4,
    };
    let q = queue(16);
    hub.subscribe(
        2,
        &q,
        ChannelKind::Chain,
        "chain.N.2026-12-29",
        Some(&other),
        None,
    );
    assert_eq!(drain(&q)[0]["recovered"], false);

    // Within the history: recovered.
    let q = queue(16);
    hub.subscribe(
        3,
        &q,
        ChannelKind::Chain,
        "chain.N.2026-12-29",
        Some(&since(4)),
        None,
    );
    let got = drain(&q);
    assert_eq!(got[0]["recovered"], true);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["seq"], 5);
}

#[test]
fn an_unseen_channel_recovers_when_its_partition_was_read_since() {
    let hub = Hub::new();
    hub.origin(&Arc::from("e"), 100);
    let q = queue(8);
    hub.subscribe(
        1,
        &q,
        ChannelKind::Ticks,
        "ticks.Q",
        Some(&since(150)),
        None,
    );
    assert_eq!(drain(&q)[0]["recovered"], true);
    hub.subscribe(1, &q, ChannelKind::Ticks, "ticks.Q", Some(&since(50)), None);
    assert_eq!(drain(&q)[0]["recovered"], false);
}

#[test]
fn a_client_ahead_of_this_node_gets_no_repeats() {
    let hub = Hub::new();
    hub.origin(&Arc::from("e"), 1);
    publish(&hub, ChannelKind::Ticks, "ticks.X", 3, "3");
    let q = queue(8);
    // The client already has 5 (from a node further ahead).
    hub.subscribe(1, &q, ChannelKind::Ticks, "ticks.X", Some(&since(5)), None);
    assert_eq!(drain(&q).len(), 1);
    publish(&hub, ChannelKind::Ticks, "ticks.X", 5, "5");
    assert!(q.is_empty());
    publish(&hub, ChannelKind::Ticks, "ticks.X", 7, "7");
    assert_eq!(drain(&q)[0]["seq"], 7);
}

#[test]
fn a_slow_chain_subscriber_is_conflated_to_the_whole_current_chain() {
    let hub = Hub::new();
    let slow = queue(4);
    hub.subscribe(
        1,
        &slow,
        ChannelKind::Chain,
        "chain.N.2026-12-29",
        None,
        None,
    );
    for seq in 1..=50 {
        publish_state(
            &hub,
            ChannelKind::Chain,
            "chain.N.2026-12-29",
            seq,
            &format!(r#"{{"d":{seq}}}"#),
            Some(&format!(r#"{{"n":{seq}}}"#)),
        );
    }
    assert!(slow.close_reason().is_none());
    let got = drain(&slow);
    // subscribed, two deltas, then (once behind) the whole chain as of 50.
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[2]["seq"], 2);
    assert_eq!(got[3]["snapshot"], true);
    assert_eq!(got[3]["seq"], 50);
    assert_eq!(got[3]["data"]["n"], 50);
}

#[test]
fn stored_snapshot_is_used_only_without_a_live_one() {
    let hub = Hub::new();
    hub.origin(&Arc::from("e"), 1);
    let stored = Snapshot {
        seq: 41,
        epoch: "e".to_owned(),
        message: Utf8Bytes::from(
            r#"{"type":"bar","channel":"bars.X","epoch":"e","seq":41,"data":{"close":9}}"#,
        ),
    };
    let q = queue(8);
    hub.subscribe(
        1,
        &q,
        ChannelKind::Bars,
        "bars.X",
        None,
        Some(stored.clone()),
    );
    assert_eq!(drain(&q)[1]["seq"], 41);
    // A bar older than the stored one (this node catching up) does not follow it.
    publish(&hub, ChannelKind::Bars, "bars.X", 40, r#"{"close":8}"#);
    assert!(q.is_empty());
    publish(&hub, ChannelKind::Bars, "bars.X", 42, r#"{"close":10}"#);
    assert_eq!(drain(&q)[0]["seq"], 42);
    let q2 = queue(8);
    hub.subscribe(2, &q2, ChannelKind::Bars, "bars.X", None, Some(stored));
    let got = drain(&q2);
    assert_eq!(got[1]["seq"], 42);
    assert_eq!(got[1]["data"]["close"], 10);
}

#[test]
fn slow_tick_subscriber_is_closed_others_continue() {
    let hub = Hub::new();
    let slow_stop = CancellationToken::new();
    let slow = Arc::new(ClientQueue::new(2, slow_stop.clone()));
    let fast = queue(100);
    hub.subscribe(1, &slow, ChannelKind::Ticks, "ticks.X", None, None);
    hub.subscribe(2, &fast, ChannelKind::Ticks, "ticks.X", None, None);
    for i in 1..=5 {
        publish(
            &hub,
            ChannelKind::Ticks,
            "ticks.X",
            i,
            &format!(r#"{{"i":{i}}}"#),
        );
    }
    assert!(slow_stop.is_cancelled());
    assert_eq!(
        slow.close_reason(),
        Some(crate::queue::CloseReason::SlowConsumer)
    );
    assert_eq!(drain(&fast).len(), 6);
}

#[test]
fn slow_bar_subscriber_is_closed_not_conflated() {
    let hub = Hub::new();
    let stop = CancellationToken::new();
    let q = Arc::new(ClientQueue::new(2, stop.clone()));
    hub.subscribe(1, &q, ChannelKind::Bars, "bars.X", None, None);
    for i in 1..=50 {
        publish(
            &hub,
            ChannelKind::Bars,
            "bars.X",
            i,
            &format!(r#"{{"i":{i}}}"#),
        );
    }
    // Every bar is a distinct candle: skipping some would corrupt the chart.
    assert!(stop.is_cancelled());
    assert_eq!(
        q.close_reason(),
        Some(crate::queue::CloseReason::SlowConsumer)
    );
}

#[test]
fn unsubscribe_stops_delivery_and_forgets_unused_channels() {
    let hub = Hub::new();
    let q = queue(8);
    hub.subscribe(1, &q, ChannelKind::Ticks, "ticks.NOPE", None, None);
    assert_eq!(hub.subscriber_count("ticks.NOPE"), 1);
    hub.unsubscribe(1, "ticks.NOPE");
    assert_eq!(hub.channel_count(), 0);

    hub.subscribe(1, &q, ChannelKind::Ticks, "ticks.X", None, None);
    publish(&hub, ChannelKind::Ticks, "ticks.X", 1, "{}");
    hub.unsubscribe(1, "ticks.X");
    drain(&q);
    publish(&hub, ChannelKind::Ticks, "ticks.X", 2, "{}");
    assert!(q.is_empty());
    // A channel with data keeps its history.
    assert_eq!(hub.channel_count(), 1);
}

#[test]
fn a_broadcast_is_encoded_to_msgpack_once_and_only_on_demand() {
    let hub = Hub::new();
    let (a, b, c) = (queue(8), queue(8), queue(8));
    for (id, q) in [(1, &a), (2, &b), (3, &c)] {
        hub.subscribe(id, q, ChannelKind::Bars, "bars.X", None, None);
        q.pop_batch(8);
    }
    publish(
        &hub,
        ChannelKind::Bars,
        "bars.X",
        5,
        r#"{"close":26000.5,"oi":7}"#,
    );
    let (got_a, got_b, got_c) = (a.pop_batch(8), b.pop_batch(8), c.pop_batch(8));
    // Nobody asked for MessagePack yet: nothing was encoded.
    assert!(!got_a[0].has_msgpack());
    // Two MessagePack clients (a, b) share one encoding; a JSON client (c) shares it too.
    let for_a = got_a[0].msgpack().expect("msgpack");
    assert!(got_b[0].has_msgpack() && got_c[0].has_msgpack());
    let for_b = got_b[0].msgpack().expect("msgpack");
    assert_eq!(for_a.as_ptr(), for_b.as_ptr());
    assert_eq!(for_a, for_b);
    // The channel's snapshot for the next subscriber is the same message, already encoded.
    let d = queue(8);
    hub.subscribe(4, &d, ChannelKind::Bars, "bars.X", None, None);
    let got_d = d.pop_batch(8);
    assert_eq!(got_d.len(), 2, "subscribed, then the latest bar");
    assert!(got_d[1].has_msgpack());
    assert_eq!(
        got_d[1].msgpack().expect("msgpack").as_ptr(),
        for_a.as_ptr()
    );
    // And it is the JSON document, in MessagePack.
    let decoded: serde_json::Value = rmp_serde::from_slice(&for_a).expect("decodes");
    let json: serde_json::Value = serde_json::from_str(got_c[0].as_str()).expect("json");
    assert_eq!(decoded, json);
    assert_eq!(decoded["data"]["close"], 26000.5);
}

#[tokio::test]
async fn a_batch_wakes_each_session_once_and_only_when_asked() {
    use futures::FutureExt;
    let hub = Hub::new();
    let a = queue(64);
    hub.subscribe(1, &a, ChannelKind::Ticks, "ticks.X", None, None);
    hub.subscribe(1, &a, ChannelKind::Ticks, "ticks.Y", None, None);
    drain(&a);
    // Consume the permit the subscription replies left, so only the batch can wake `a`.
    let _ = a.wait().now_or_never();
    publish(&hub, ChannelKind::Ticks, "ticks.X", 1, "{}");
    publish(&hub, ChannelKind::Ticks, "ticks.Y", 1, "{}");
    publish(&hub, ChannelKind::Ticks, "ticks.X", 2, "{}");
    assert!(
        a.wait().now_or_never().is_none(),
        "publishing alone wakes nobody"
    );
    assert_eq!(hub.lock().unwoken.len(), 1, "one wake owed to the session");
    hub.wake_pending();
    assert!(a.wait().now_or_never().is_some(), "woken by wake_pending");
    assert_eq!(a.pop_batch(usize::MAX).len(), 3);
    // The next batch claims a wake again.
    publish(&hub, ChannelKind::Ticks, "ticks.X", 3, "{}");
    assert_eq!(hub.lock().unwoken.len(), 1);
}

#[test]
fn unsubscribe_everywhere_drops_every_subscription_of_one_client() {
    let hub = Hub::new();
    let (a, b) = (queue(8), queue(8));
    hub.subscribe(1, &a, ChannelKind::Ticks, "ticks.X", None, None);
    hub.subscribe(1, &a, ChannelKind::Ticks, "ticks.Y", None, None);
    hub.subscribe(2, &b, ChannelKind::Ticks, "ticks.X", None, None);
    publish(&hub, ChannelKind::Ticks, "ticks.X", 1, "{}");
    hub.unsubscribe_everywhere(1);
    assert_eq!(hub.subscriber_count("ticks.X"), 1);
    assert_eq!(hub.subscriber_count("ticks.Y"), 0);
    // A channel that never carried data is forgotten once unused; one with data stays.
    assert_eq!(hub.channel_count(), 1);
}
