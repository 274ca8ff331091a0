//! The fuzz bodies of every NBD decoder (feature `fuzz`, for geom_multipath/fuzz, and the
//! unit tests' smoke runs): arbitrary bytes in, and whatever decodes must encode back.

use super::*;

/// Fuzz body for the server's request decoder: decodes requests from `data` one after
/// another until the bytes run out or are invalid, and checks that every request decoded
/// encodes back to exactly the bytes it came from. Panics only on a codec bug.
pub fn fuzz_request(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((req, payload, used))) = decode_request(rest) {
        assert!(used <= rest.len() && used == Request::LEN + payload.len());
        assert!(payload.len() <= MAX_PAYLOAD as usize);
        let mut again = req.encode().to_vec();
        again.extend_from_slice(payload);
        assert_eq!(again, &rest[..used], "request round trip");
        assert_eq!(Request::decode(&req.encode()), Ok(req));
        rest = &rest[used..];
    }
}

/// Fuzz body for the server's option decoders: decodes options one after another and
/// checks that the raw form encodes back exactly and that whatever parses re-parses to the
/// same value from its own encoding.
pub fn fuzz_option(data: &[u8]) {
    if let Some(b) = data.first_chunk::<4>() {
        let _ = decode_client_flags(b);
    }
    let mut rest = data;
    while let Ok(Some((raw, used))) = decode_option(rest) {
        assert!(used <= rest.len());
        assert_eq!(raw.encode(), &rest[..used], "option round trip");
        if let Ok(opt) = ClientOption::parse(raw.option, &raw.data) {
            let bytes = opt.encode();
            let (again, n) = decode_option(&bytes)
                .expect("own encoding decodes")
                .expect("own encoding is complete");
            assert_eq!(n, bytes.len());
            assert_eq!(
                ClientOption::parse(again.option, &again.data).as_ref(),
                Ok(&opt),
                "option re-parse"
            );
        }
        rest = &rest[used..];
    }
}

/// Fuzz body for the client's decoders: greeting, option replies, the `EXPORT_NAME`
/// answer and simple replies, each at every start of `data`'s first bytes; every value
/// decoded must re-encode to something that decodes to the same value.
pub fn fuzz_option_reply(data: &[u8]) {
    if let Some(b) = data.first_chunk::<{ Greeting::LEN }>() {
        if let Ok(g) = Greeting::decode(b) {
            assert_eq!(&g.encode(), b, "greeting round trip");
        }
    }
    for no_zeroes in [false, true] {
        if let Some((r, n)) = ExportNameReply::decode(data, no_zeroes) {
            let bytes = r.encode(no_zeroes);
            assert_eq!(bytes.len(), n);
            assert_eq!(ExportNameReply::decode(&bytes, no_zeroes), Some((r, n)));
        }
    }
    if let Some(b) = data.first_chunk::<{ SimpleReply::LEN }>() {
        if let Ok(r) = SimpleReply::decode(b) {
            assert_eq!(&r.encode(), b, "simple reply round trip");
        }
    }
    let mut rest = data;
    while let Ok(Some((option, reply, used))) = decode_option_reply(rest) {
        assert!(used <= rest.len());
        let bytes = reply.encode(option);
        let (o2, r2, n2) = decode_option_reply(&bytes)
            .expect("own encoding decodes")
            .expect("own encoding is complete");
        assert_eq!(
            (o2, &r2, n2),
            (option, &reply, bytes.len()),
            "reply round trip"
        );
        rest = &rest[used..];
    }
}
