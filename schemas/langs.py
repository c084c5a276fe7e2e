"""Language codes: what clients may send, and what each engine calls the language.

Clients send ISO 639-1 codes, optionally with a region (``pt-BR``, ``zh_CN``), ISO 639-2/3 codes or
English names; everything is normalised to ISO 639-1. Whisper uses ISO 639-1; opus-mt (EasyNMT,
CTranslate2 Marian conversions) has a few model-specific codes.
"""

from __future__ import annotations

from schemas.errors import BabelstreamError

LANGUAGES: dict[str, str] = {
    "ar": "Arabic",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sv": "Swedish",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
    "ca": "Catalan",
    "bg": "Bulgarian",
    # the rest of what Whisper recognises (and translates to English)
    "af": "Afrikaans",
    "am": "Amharic",
    "as": "Assamese",
    "az": "Azerbaijani",
    "ba": "Bashkir",
    "be": "Belarusian",
    "bn": "Bengali",
    "bo": "Tibetan",
    "br": "Breton",
    "bs": "Bosnian",
    "cy": "Welsh",
    "et": "Estonian",
    "eu": "Basque",
    "fa": "Persian",
    "fo": "Faroese",
    "gl": "Galician",
    "gu": "Gujarati",
    "ha": "Hausa",
    "haw": "Hawaiian",
    "hr": "Croatian",
    "ht": "Haitian Creole",
    "hy": "Armenian",
    "is": "Icelandic",
    "jw": "Javanese",
    "ka": "Georgian",
    "kk": "Kazakh",
    "km": "Khmer",
    "kn": "Kannada",
    "la": "Latin",
    "lb": "Luxembourgish",
    "ln": "Lingala",
    "lo": "Lao",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "mg": "Malagasy",
    "mi": "Maori",
    "mk": "Macedonian",
    "ml": "Malayalam",
    "mn": "Mongolian",
    "mr": "Marathi",
    "ms": "Malay",
    "mt": "Maltese",
    "my": "Burmese",
    "ne": "Nepali",
    "oc": "Occitan",
    "pa": "Punjabi",
    "ps": "Pashto",
    "sa": "Sanskrit",
    "sd": "Sindhi",
    "si": "Sinhala",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sn": "Shona",
    "so": "Somali",
    "sq": "Albanian",
    "sr": "Serbian",
    "su": "Sundanese",
    "sw": "Swahili",
    "ta": "Tamil",
    "te": "Telugu",
    "tg": "Tajik",
    "tk": "Turkmen",
    "tl": "Tagalog",
    "tt": "Tatar",
    "ur": "Urdu",
    "uz": "Uzbek",
    "yi": "Yiddish",
    "yo": "Yoruba",
    "yue": "Cantonese",
}

_ALIASES: dict[str, str] = {
    "ara": "ar",
    "ces": "cs",
    "cze": "cs",
    "dan": "da",
    "deu": "de",
    "ger": "de",
    "ell": "el",
    "gre": "el",
    "eng": "en",
    "spa": "es",
    "fin": "fi",
    "fra": "fr",
    "fre": "fr",
    "heb": "he",
    "iw": "he",
    "hin": "hi",
    "hun": "hu",
    "ind": "id",
    "in": "id",
    "ita": "it",
    "jpn": "ja",
    "kor": "ko",
    "nld": "nl",
    "dut": "nl",
    "nor": "no",
    "nb": "no",
    "nn": "no",
    "pol": "pl",
    "por": "pt",
    "ron": "ro",
    "rum": "ro",
    "mo": "ro",
    "rus": "ru",
    "swe": "sv",
    "tha": "th",
    "tur": "tr",
    "ukr": "uk",
    "vie": "vi",
    "zho": "zh",
    "chi": "zh",
    "cmn": "zh",
    "cat": "ca",
    "bul": "bg",
    "jv": "jw",  # Whisper's code for Javanese
}

# opus-mt model names that differ from ISO 639-1 (Helsinki-NLP naming)
_OPUS_CODES: dict[str, str] = {"ja": "jap", "no": "nb"}


class UnknownLanguage(BabelstreamError, ValueError):
    """A language code that no contract or engine here knows."""


def normalize_lang(code: str | None) -> str | None:
    """ISO 639-1 for any accepted spelling; None/''/'auto' mean 'detect'. Raises UnknownLanguage."""
    if code is None:
        return None
    c = code.strip().replace("_", "-")
    if c.lower() in ("", "auto", "detect"):
        return None
    base = c.split("-", 1)[0].lower()
    if base in LANGUAGES:
        return base
    if base in _ALIASES:
        return _ALIASES[base]
    by_name = {v.lower(): k for k, v in LANGUAGES.items()}
    if c.lower() in by_name:
        return by_name[c.lower()]
    raise UnknownLanguage(
        f"unknown language {code!r}; use an ISO 639-1 code such as {', '.join(sorted(LANGUAGES)[:8])}..."
    )


def opus_code(lang: str) -> str:
    return _OPUS_CODES.get(lang, lang)
