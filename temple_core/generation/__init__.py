"""Helpers of the ``generate`` stage (SPEC §2-4): prompts, caption clean-up, perturbation plans, pair filters.

Kept out of the plugins so that every caption generator (built-in or third-party) shares
one implementation of the rules the paper's numbers depend on.
"""
