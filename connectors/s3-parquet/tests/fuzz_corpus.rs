//! Replays the `wire_decode` fuzz corpus (`fuzz/corpus/wire_decode/`)
//! through the fuzz target's own property checks, the codec's and the
//! lake's (`fuzz/src/{wire,lake}.rs`, compiled in by path), on stable and
//! without libFuzzer: the sink's fast decoder accepts exactly what the
//! generic reader accepts and gives the same rows.

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/lake.rs"]
mod lake;
#[path = "../../../fuzz/src/typed.rs"]
mod typed;
#[path = "../../../fuzz/src/wire.rs"]
mod wire;

#[test]
fn wire_decode_corpus_in_the_lake() {
    corpus::replay("wire_decode", |bytes| {
        wire::check(bytes);
        lake::check(bytes);
    });
}
