#include "queue/repeat_schedule.hpp"
