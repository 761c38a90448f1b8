"""Static files in production: hashed names and compressed copies (WhiteNoise)."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's manifest storage, without rewriting `sourceMappingURL` comments in JS.

    The vendored marked and DOMPurify builds end with a `//# sourceMappingURL=` comment, but
    their source maps are not vendored; Django would stop collectstatic on the missing file.
    A browser only asks for a map when its developer tools are open (a 404 then, nothing
    else). Our own page scripts are ES modules that import each other by their plain names
    (js/stream/): those are served under the plain name, with WhiteNoise's short cache, so a
    deploy is seen within a minute. CSS url() references (KaTeX's fonts) are still hashed
    and checked.
    """

    patterns = tuple(
        (extension, rules)
        for extension, rules in CompressedManifestStaticFilesStorage.patterns
        if extension != "*.js"
    )
