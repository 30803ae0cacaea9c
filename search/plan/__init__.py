"""A plan: phases (studies chained by ``from:``) run in order under one GPU-hour budget, then finished.

``schema`` (the plan file: ``PlanSpec``), ``fit`` (the fitting rule: each phase's share, cut where it
costs least), ``state`` (progress kept in the study storage), ``runner`` (``facesearch plan run``),
``follow`` (``facesearch worker --plan``), ``status`` (``facesearch plan status``), ``requeue`` (when
``plan submit``'s job runs again).
"""
