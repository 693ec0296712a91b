"""thermal_monitor's room: thermal zones and hwmon sensors, thresholds, throttle penalty."""
