//! Forklane: release experiments on a service mesh, decided with statistics.
