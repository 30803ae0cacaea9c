"""Verification: embedding pair lists and their EER (``evaluate``), EER intervals and paired comparisons
(``stats``), and scoring a list with an exported model (``scoring``)."""
