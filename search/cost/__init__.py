"""What trials cost before they run: the calibration table (``calibration``), data sizes (``datasize``),
a trial's estimate (``estimate``), GPU-hour budgets shared by workers (``budget``), the planner over
chained phases (``plan``), and the rungs of successive-halving pruners (``rungs``)."""
