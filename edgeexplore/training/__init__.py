"""Training: the short proxy training a search uses to rank architectures (:mod:`.proxy`), and
training in full with the authors' recipes (:mod:`.full`, :mod:`.recipe`, :mod:`.loaders`,
:mod:`.checkpoint`, :mod:`.distributed`) with its evaluation (:mod:`.evaluate`)."""
