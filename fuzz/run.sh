#!/usr/bin/env bash
# Fuzz one target for a while: fuzz/run.sh TARGET SECONDS
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them. cargo-fuzz is installed if missing. The first run seeds
# the corpus from the repository's own data (real modem captures, the example
# configs); what the fuzzer finds is kept in fuzz/corpus/TARGET, crashes in
# fuzz/artifacts/TARGET. Targets: pdu_deliver pdu_status_report udh at_lines
# smpp_frame receipt_text api_json config (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET SECONDS}
seconds=${2:-120}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# Build beside this directory, not in a target directory set for the main crate.
unset CARGO_TARGET_DIR

corpus=corpus/$target
mkdir -p "$corpus"
seed() { printf '%s' "$2" >"$corpus/seed-$1"; }
if [ -z "$(ls -A "$corpus")" ]; then
    case $target in
    pdu_deliver | pdu_status_report)
        # Each capture's PDU, as the octets its hex stands for.
        n=0
        grep -o '"pdu": "[0-9A-Fa-f]*"' ../tests/data/modem/realworld.jsonl | cut -d'"' -f4 | while read -r hex; do
            n=$((n + 1))
            printf '%s' "$hex" | xxd -r -p >"$corpus/seed-realworld-$n"
        done
        ;;
    udh)
        printf '\x05\x00\x03\x2a\x02\x01' >"$corpus/seed-8bit"
        printf '\x0a\x01\xff\x08\x04\x01\x02\x02\x01' >"$corpus/seed-16bit"
        ;;
    at_lines)
        seed boot $'\x20\r\nRDY\r\n+CPIN: READY\r\n\r\nSMS Ready\r\n^RSSI:14\r\n'
        seed cmgs $'\x05AT+CMGS=23\r\r\n> 0011000B919761\x1a\r\n+CMGS: 12\r\n\r\nOK\r\n'
        seed cmt $'\x41\r\n+CMT: ,24\r\n07919761989901F0040B919761000000F00000621010214100000AE8329BFD4697D9EC37\r\n+CMTI: "SM",3\r\n+CME ERROR: 10\r\n'
        ;;
    smpp_frame)
        # enquire_link, and a deliver_sm carrying a receipt.
        printf '\x07\x00\x00\x00\x10\x00\x00\x00\x15\x00\x00\x00\x00\x00\x00\x00\x01' >"$corpus/seed-enquire-link"
        body='id:1A2B sub:001 dlvrd:001 submit date:2611231200 done date:2611231201 stat:DELIVRD err:000 text:x'
        {
            printf '\x00' # the target's first byte: feed the stream one byte at a time
            printf '%08x' $((16 + 34 + ${#body})) | xxd -r -p
            printf '\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x02'
            # service_type, source (international), destination (short code), esm_class 0x04 (a
            # receipt), then protocol_id to sm_default_msg_id all zero.
            printf '\x00\x01\x0179161234567\x00\x03\x00MyShop\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00'
            printf '%02x' ${#body} | xxd -r -p
            printf '%s' "$body"
        } >"$corpus/seed-receipt"
        ;;
    receipt_text)
        seed standard 'id:0123456789 sub:001 dlvrd:001 submit date:2611231200 done date:2611231201 stat:DELIVRD err:000 text:Hello'
        seed odd 'stat:undeliv id:ab12CD err:034 text:id:fake stat:DELIVRD'
        ;;
    api_json)
        seed one '{"to": "8 916 123-45-67", "text": "Ваш код: 4821", "priority": "otp"}'
        seed batch '{"messages": [{"to": ["+79161234567", "+4915123456789"], "text": "Hi {x}", "from": "MyShop", "send_at": "2030-01-01T00:00:00Z", "valid_until": "2030-01-02T00:00:00Z", "route": "de", "reference": "r"}]}'
        ;;
    config)
        cp ../firmware-config/demo.toml "$corpus/seed-demo.toml"
        cp ../firmware-config/smsgw.example.toml "$corpus/seed-example.toml"
        ;;
    esac
fi

mkdir -p "artifacts/$target"
# -max_total_time ends the run; -rss_limit_mb catches allocation without bound; -timeout an input
# that takes more than 10 s (a loop that does not end).
cargo fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1
