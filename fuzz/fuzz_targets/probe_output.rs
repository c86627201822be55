//! ffprobe's JSON answer: read or refused with a reason; what is read is a usable video.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(facts) = cosmos_media::read_probe(bytes) {
        assert!(facts.fps.is_finite() && facts.fps > 0.0, "{facts:?}");
        assert!(facts.duration.is_none_or(|d| d.is_finite() && d >= 0.0));
    }
});
