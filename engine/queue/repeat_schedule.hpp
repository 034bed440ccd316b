#pragma once
// Placeholder: the job-scheduler (repeat) timing is being written.
