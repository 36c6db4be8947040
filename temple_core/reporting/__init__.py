"""What a person reads after a run: the ``temple run`` summary (:mod:`.summary`) and
``report.html`` (:mod:`.report`)."""
