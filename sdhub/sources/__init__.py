"""Getting models: references, the Civitai and Hugging Face clients, and the one downloader.

``refs`` parses what users paste, ``civitai`` and ``huggingface`` talk to the two sites, ``http``
holds the retry and credential rules, ``download`` fetches files resumably and verified, and
``get`` ties them together into ``sdhub get`` (exported by ``sdhub.library``).
"""
