"""The Client Microservice: REST APIs for frontend, monitor and workers, and the control plane."""
