-- The console's decisions besides replay and discard: a letter the loop guard set aside
-- (`quarantined`) and one replayed with corrected data (`edited`).
ALTER TABLE dead_letter_resolutions DROP CONSTRAINT dead_letter_resolutions_action_check;
ALTER TABLE dead_letter_resolutions
    ADD CONSTRAINT dead_letter_resolutions_action_check
    CHECK (action IN ('replayed', 'discarded', 'quarantined', 'edited'));
