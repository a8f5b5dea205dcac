"""Vital signs and other readings: what each kind is and its unit (kinds), numbers as
people type them (numbers), the readings themselves (readings), each patient's alert
thresholds and the alerts they raise (thresholds, alerts), a device's CSV (csv_import)
and the series the charts draw (charts)."""
