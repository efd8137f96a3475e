"""``clientswarm run``: one cluster through the same service ``serve`` runs, in this process."""
