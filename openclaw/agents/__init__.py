"""The agent runtime: the contract (:mod:`.types`), agents from configuration
(:mod:`.registry`), runs (:mod:`.run`, :mod:`.runtime`) and model providers
(:mod:`.providers`). Import from the submodules; this package stays import-light."""
