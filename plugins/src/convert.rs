//! Record values ↔ script values: decimals as exact `Decimal`s, picklists as their api value
//! strings, multi-picklists as arrays, dates and date-times as ISO strings, `()` for null.
