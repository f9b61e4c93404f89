#!/usr/bin/env python3
"""Derive src/zone/ru.tsv: Russian numbers (+7, national 10 digits) -> IANA zone.

Mobile numbers (+7 9xx): the registry of the Russian numbering plan
("Реестр российской системы и плана нумерации", Минцифры / Rossvyaz,
opendata.digital.gov.ru/downloads/DEF-9xx.csv), columns
`АВС/ DEF;От;До;Емкость;Оператор;Регион;...`: each range of numbers and
the region it is assigned to.

Geographic numbers (+7 3xx/4xx/8xx): one region per ABC code, read from
the `+7 (ABC) ###-##-##` entries of the phone-ru.js list of Inputmask
(github.com/RobinHerbots/Inputmask, dist/inputmask/phone-codes, 2018),
plus the codes it lacks (EXTRA_ABC). The registry's ABC files split codes
finer, but every range of one code lies in that code's subject.

Each range's region (the `Регион` column) is read for the name of a
federal subject and given that subject's zone (the table ZONES below: a
fact of the law on time calculation, 107-FZ, and tzdata). A range whose
region names subjects of different zones, or the whole federation, is
left out (the gateway falls back to its default zone there). Neighbouring
ranges of one zone are merged; the output lists where each run starts.

usage: tools/ru_zones.py DATE DEF-9xx.csv phone-ru.js > src/zone/ru.tsv
"""
import csv
import re
import sys

# Subject name stems -> zone. A subject not named here keeps Moscow time.
ZONES = [
    (r"Калининград", "Europe/Kaliningrad"),
    (r"Самар|Удмурт", "Europe/Samara"),
    (r"Ульянов", "Europe/Ulyanovsk"),
    (r"Саратов", "Europe/Saratov"),
    (r"Астрахан", "Europe/Astrakhan"),
    (r"Волгоград", "Europe/Volgograd"),
    (r"Киров", "Europe/Kirov"),
    (r"Крым|Севастопол", "Europe/Simferopol"),
    (r"Свердлов|Челяб|Курган|Тюмен|Ханты|Ямал|Башк|Оренбург|Перм", "Asia/Yekaterinburg"),
    (r"Омск", "Asia/Omsk"),  # capital О: not the "омск" in Томская
    (r"Новосиб", "Asia/Novosibirsk"),
    (r"Томск", "Asia/Tomsk"),
    (r"Алтай", "Asia/Barnaul"),
    (r"Кемеров|Кузбас", "Asia/Novokuznetsk"),
    (r"Краснояр|Хакас|Тыва|Тува", "Asia/Krasnoyarsk"),
    (r"Иркут|Бурят", "Asia/Irkutsk"),
    (r"Забайкал", "Asia/Chita"),
    (r"Саха\b|Якут|Амур", "Asia/Yakutsk"),
    (r"Примор|Хабаров|Еврей", "Asia/Vladivostok"),
    (r"Магадан", "Asia/Magadan"),
    (r"Сахалин", "Asia/Sakhalin"),
    (r"Камчат|Коряк", "Asia/Kamchatka"),
    (r"Чукот", "Asia/Anadyr"),
]
# ABC codes missing from the Inputmask list.
EXTRA_ABC = {"365": "Республика Крым", "869": "г. Севастополь", "818": "Архангельская область"}
# Not Russia (Abkhazia), though dialled through +7 8.
SKIP_ABC = {"840"}
NOWHERE = re.compile(r"^\s*(-|Российская Федерация|)\s*$")
PARTS = re.compile(r"\||\s\*\s|,|\sи\s")


def zone_of(region):
    if NOWHERE.match(region):
        return None
    zones = set()
    for part in PARTS.split(region):
        if not part.strip():
            continue
        hits = {z for stem, z in ZONES if re.search(stem, part)}
        if len(hits) > 1:
            return None
        zones |= hits or {"Europe/Moscow"}
    return zones.pop() if len(zones) == 1 else None


def main():
    date, def_csv, abc_js = sys.argv[1:4]
    ranges = []
    with open(def_csv, encoding="utf-8-sig") as f:
        rows = csv.reader(f, delimiter=";")
        next(rows)
        for row in rows:
            if len(row) < 6 or not row[0].strip().isdigit():
                continue
            code = row[0].strip()
            lo, hi = int(code + row[1].strip()), int(code + row[2].strip())
            ranges.append((lo, hi, zone_of(row[5])))
    with open(abc_js, encoding="utf-8") as f:
        entries = re.findall(r'mask:\s*"\+7 \((\d{3})\) [#-]+",\s*cc:\s*"RU",\s*cd:\s*"Russia",\s*region:\s*"([^"]*)"', f.read())
    abc = dict(EXTRA_ABC)
    for code, region in entries:
        abc.setdefault(code, region)
    for code, region in abc.items():
        if code not in SKIP_ABC:
            ranges.append((int(code) * 10**7, int(code) * 10**7 + 9999999, zone_of(region)))
    ranges.sort()
    runs = []  # (start, zone or "-")
    mixed = set()  # where a run of ranges of no one zone starts
    end = None
    for lo, hi, zone in ranges:
        if zone is None:
            mixed.add(lo)
        zone = zone or "-"
        if end is not None and lo > end + 1 and runs[-1][1] != "-":
            runs.append((end + 1, "-"))
        if not runs or runs[-1][1] != zone:
            runs.append((lo, zone))
        elif zone == "-" and lo in mixed:
            mixed.add(runs[-1][0])  # a gap run that goes on into mixed ranges stays
        end = hi if end is None else max(end, hi)
    runs.append((end + 1, "-"))
    # A gap (numbers not assigned yet) between two runs of one zone joins them.
    merged = []
    for i, (start, zone) in enumerate(runs):
        if zone == "-" and start not in mixed and 0 < i < len(runs) - 1 and merged and merged[-1][1] == runs[i + 1][1]:
            continue
        if merged and merged[-1][1] == zone:
            continue
        merged.append((start, zone))
    runs = merged
    out = sys.stdout
    out.write("# Russian numbers (+7, 10 national digits) -> IANA time zone.\n")
    out.write("# Derived by tools/ru_zones.py. Mobile (9xx): the registry of the Russian numbering\n")
    out.write("# plan (Минцифры России, \"Реестр российской системы и плана нумерации\",\n")
    out.write(f"# opendata.digital.gov.ru DEF-9xx.csv, as of {date}). Geographic (3xx/4xx/8xx):\n")
    out.write("# one subject per ABC code (Inputmask's phone-ru.js list, 2018, and three codes added).\n")
    out.write("# Each line: the first number of a run, then its zone (`-`: unknown or mixed).\n")
    out.write("# A run ends where the next line's starts.\n")
    for start, zone in runs:
        out.write(f"{start}\t{zone}\n")


if __name__ == "__main__":
    main()
