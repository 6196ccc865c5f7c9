"""Inputs and libphonenumber's readings of them, for numguard's differential test.

Prints one JSON object per line: {"input", "region", "valid", "e164", "mobile"}, where
`valid` is parse + is_valid_number, and `mobile` counts MOBILE, FIXED_LINE_OR_MOBILE and
PAGER (as numguard does). Inputs: every region's and non-geographic entity's example
number of every type, written as E.164, international and national format, national
format in full-width digits, an RFC 3966 URI, with the last digits changed, shortened and
lengthened, with a stray letter and as a vanity number; each with and without its region. Deterministic (seeded), so a failure can be reproduced.
"""

import json
import random
import sys

import phonenumbers
from phonenumbers import PhoneNumberFormat as F
from phonenumbers import PhoneNumberType as T

MOBILE = {T.MOBILE, T.FIXED_LINE_OR_MOBILE, T.PAGER}
TYPES = [
    T.FIXED_LINE, T.MOBILE, T.TOLL_FREE, T.PREMIUM_RATE, T.SHARED_COST, T.VOIP,
    T.PERSONAL_NUMBER, T.PAGER, T.UAN, T.VOICEMAIL,
]
FULL_WIDTH = str.maketrans("0123456789+-", "０１２３４５６７８９＋－")
KEYPAD = {"2": "A", "3": "D", "4": "G", "5": "J", "6": "M", "7": "P", "8": "T", "9": "W"}


def reading(text, region):
    try:
        number = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException:
        return {"valid": False}
    if number.extension or not phonenumbers.is_valid_number(number):
        return {"valid": False}
    return {
        "valid": True,
        "e164": phonenumbers.format_number(number, F.E164),
        "mobile": phonenumbers.number_type(number) in MOBILE,
    }


def examples():
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                yield region, number
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            yield "", number


def inputs(rng):
    for region, number in examples():
        national = phonenumbers.format_number(number, F.NATIONAL)
        forms = [
            (phonenumbers.format_number(number, F.E164), ""),
            (phonenumbers.format_number(number, F.INTERNATIONAL), ""),
            (phonenumbers.format_number(number, F.RFC3966), ""),
            (phonenumbers.format_number(number, F.E164).translate(FULL_WIDTH), ""),
        ]
        if region:
            forms += [(national, region), (national.translate(FULL_WIDTH), region)]
        e164 = phonenumbers.format_number(number, F.E164)
        for _ in range(6):
            keep = max(3, len(e164) - rng.randint(1, 4))
            tail = "".join(rng.choice("0123456789") for _ in range(len(e164) - keep))
            forms.append((e164[:keep] + tail, ""))
        forms += [(e164[:-2], ""), (e164 + "1", ""), (e164 + "23", "")]
        stray = rng.randint(4, len(e164) - 1)
        forms.append((e164[:stray] + "a" + e164[stray:], ""))  # one letter: noise
        if all(d in KEYPAD for d in e164[-4:]):
            forms.append((e164[:-4] + "".join(KEYPAD[d] for d in e164[-4:]), ""))  # vanity
        for text, given in forms:
            yield text, given
            if region and not given:
                yield text, region  # a region never changes an international number


def main():
    rng = random.Random(16)
    seen = set()
    for text, region in inputs(rng):
        if (text, region) in seen:
            continue
        seen.add((text, region))
        case = {"input": text, "region": region}
        case.update(reading(text, region))
        sys.stdout.write(json.dumps(case, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
