"""Sessions: key normalisation (:mod:`.keys`), per-key serialisation
(:mod:`.lanes`) and the on-disk store in OpenClaw's layout (:mod:`.store`)."""
