"""chaqum compatibility: jobs written for chaqum import chaqum.lib, which is pmjq's client."""
