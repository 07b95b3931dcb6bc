"""HTTP only: app factory, auth, rendering, paging, errors and one route module per resource."""
