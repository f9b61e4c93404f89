#!/usr/bin/env python3
"""Derive src/zone/countries.tsv: calling codes whose numbers all lie in one zone.

Input: libphonenumber's resources/timezones/map_data.txt (prefix|zone&zone...,
github.com/google/libphonenumber). A calling code is kept when its own line
names one zone and no longer prefix under it names another; codes of
countries that span zones (the US, Russia, Brazil...) are left out, and the
gateway falls back to its default zone for them (Russia has its own table).

usage: tools/single_zone_countries.py DATE map_data.txt > src/zone/countries.tsv
"""
import sys


def main():
    date, path = sys.argv[1:3]
    lines = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            prefix, zones = line.split("|", 1)
            lines[prefix] = zones.split("&")
    roots = [p for p in lines if not any(p != q and p.startswith(q) for q in lines)]
    out = sys.stdout
    out.write("# Calling codes whose numbers all keep one time zone.\n")
    out.write("# Derived by tools/single_zone_countries.py from libphonenumber's\n")
    out.write(f"# resources/timezones/map_data.txt (github.com/google/libphonenumber, as of {date}).\n")
    for root in sorted(roots, key=int):
        zones = {z for p, zs in lines.items() if p.startswith(root) for z in zs}
        if len(zones) == 1 and root != "7":
            out.write(f"{root}\t{zones.pop()}\n")


if __name__ == "__main__":
    main()
